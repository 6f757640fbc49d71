"""The demo SCIM target as a real process: scim2-cli compliance check + an Okta-like flow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from demo_scim_target.admin_client import TargetAdmin
from demo_scim_target.process import free_port, start_target

from tests.conftest import venv_tool

pytestmark = pytest.mark.integration
TOKEN = "it-token"


def scim2_cli() -> str:
    return venv_tool("scim2")


@pytest.fixture(scope="module")
def target():
    with start_target(free_port(), TOKEN) as running:
        yield running


def test_scim2_cli_compliance_check_passes(target):
    result = subprocess.run(
        [scim2_cli(), "--url", target.scim_v2_url, "-h", f"Authorization: Bearer {TOKEN}", "test"],
        capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output and "ERROR" not in output and "SKIPPED" not in output
    assert output.count("SUCCESS") > 50, output


def test_scim2_cli_fails_without_token(target):
    result = subprocess.run([scim2_cli(), "--url", target.scim_v2_url, "test"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0


async def test_okta_like_v1_flow_and_faults_over_http(target):
    async with TargetAdmin(target.base_url) as admin, \
            httpx.AsyncClient(base_url=target.scim_v1_url, headers=target.auth_header,
                              timeout=5) as scim:
        await admin.reset()
        assert (await scim.get("/ServiceProviderConfigs")).status_code == 200
        probe = await scim.get("/Users", params={"startIndex": 1, "count": 2})
        assert probe.json()["totalResults"] == 0
        lookup = await scim.get("/Users", params={"filter": 'userName eq "ann@example.com"',
                                                  "startIndex": 1, "count": 100})
        assert lookup.json()["totalResults"] == 0
        created = await scim.post("/Users", json={"schemas": ["urn:scim:schemas:core:1.0"],
                                                  "userName": "ann@example.com", "password": "pw!",
                                                  "active": True})
        assert created.status_code == 201
        uid = created.json()["id"]
        patched = await scim.patch(f"/Users/{uid}", json={"schemas": ["urn:scim:schemas:core:1.0"],
                                                          "id": uid, "active": False})
        assert patched.json()["active"] is False
        users = await admin.users()
        assert users[0]["active"] is False and users[0]["_password"] == "pw!"
        log = await admin.requests()
        assert [e["status"] for e in log] == [200, 200, 200, 201, 200]
        assert log[3]["body"]["password"] == "***REDACTED***"

        # a target that does not answer within the client's timeout
        await admin.add_fault(method="GET", path_regex="/Users$", delay_s=1.5, times=1)
        with pytest.raises(httpx.ReadTimeout):
            await scim.get("/Users", timeout=0.5)
        await admin.add_fault(503, body="<html>down</html>", content_type="text/html", times=1)
        down = await scim.get(f"/Users/{uid}")
        assert down.status_code == 503 and down.headers["content-type"].startswith("text/html")
        assert (await scim.get(f"/Users/{uid}")).status_code == 200
        await admin.reset()


def test_quirks_on_the_command_line():
    with start_target(None, TOKEN, ["--quirk", "id-equals-username", "--quirk", "patch-204"]) as t:
        with httpx.Client(base_url=t.scim_v2_url, headers=t.auth_header, timeout=5) as scim:
            user = scim.post("/Users", json={"userName": "q@example.com"}).json()
            assert user["id"] == "q@example.com"
            r = scim.patch("/Users/q@example.com", json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": False}}]})
            assert r.status_code == 204
    assert t.process.poll() is not None  # terminated on exit


async def test_tenants_latency_inflight_and_log_size_over_http():
    """The real process: `--latency-ms` makes concurrent requests wait together (asyncio.sleep), each tenant has its
    store and its in-flight gauge, `--log-entries` bounds the request log."""
    import asyncio
    import time

    with start_target(None, TOKEN, ["--latency-ms", "300", "--log-entries", "50"]) as t:
        async with TargetAdmin(t.base_url) as admin, \
                httpx.AsyncClient(headers=t.auth_header, timeout=10) as http:
            assert (await admin.config())["latency_ms"] == 300
            created = await http.post(f"{t.tenant_url('acme')}/Users", json={"userName": "a@example.com"})
            assert created.status_code == 201
            assert created.json()["meta"]["location"].startswith(f"{t.base_url}/t/acme/scim/v2/Users/")
            await admin.reset_inflight()
            urls = [f"{t.tenant_url('acme')}/Users"] * 40 + [f"{t.tenant_url('globex', 'v1')}/Users"] * 20 \
                + [f"{t.scim_v2_url}/Users"] * 20
            started = time.monotonic()
            answers = await asyncio.gather(*(http.get(u) for u in urls))
            elapsed = time.monotonic() - started
            assert [r.status_code for r in answers] == [200] * 80 and elapsed < 5
            assert [r.json()["totalResults"] for r in (answers[0], answers[40], answers[60])] == [1, 0, 0]
            gauges = await admin.inflight()
            assert {name: g["current"] for name, g in gauges.items()} == {"acme": 0, "globex": 0, "default": 0, "*": 0}
            assert gauges["acme"]["peak"] > 1 and gauges["*"]["peak"] >= gauges["acme"]["peak"]
            assert [u["userName"] for u in await admin.users("acme")] == ["a@example.com"] and await admin.users() == []
            log = await admin.requests()
            assert len(log) == 50 and log[-1]["seq"] == 81
            assert {e["tenant"] for e in log} <= {"acme", "globex", "default"}
            await admin.set_latency(0)
            started = time.monotonic()
            await http.get(f"{t.scim_v2_url}/Users")
            assert time.monotonic() - started < 0.25
