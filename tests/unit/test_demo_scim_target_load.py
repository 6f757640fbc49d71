"""The demo SCIM target under load: response latency (asyncio.sleep, set at start or at run time), in-flight
gauges per tenant, the request log's capacity and `since` cost, the userName index."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from demo_scim_target.admin_client import TargetAdmin
from demo_scim_target.app import create_app
from demo_scim_target.cli import parse_args
from demo_scim_target.common import TargetConfig
from demo_scim_target.requestlog import RequestLog

TOKEN = "demo-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_client(**config) -> TestClient:
    return TestClient(create_app(TargetConfig(token=TOKEN, **config)))


# --- latency -----------------------------------------------------------------------------------

def test_latency_is_added_to_scim_requests_only():
    client = make_client(latency_ms=250)
    assert client.get("/_admin/config").json() == {"name": "jira", "quirks": [], "latency_ms": 250,
                                                    "log_entries": 10_000}
    started = time.monotonic()
    assert client.get("/scim/v2/Users", headers=AUTH).status_code == 200
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    client.get("/health")
    client.get("/_admin/users")
    assert time.monotonic() - started < 0.2
    entry = client.get("/_admin/requests").json()["requests"][-1]
    assert entry["duration_ms"] >= 250


def test_latency_set_at_run_time():
    client = make_client()
    assert client.post("/_admin/config", json={"latency_ms": 300}).json()["latency_ms"] == 300
    started = time.monotonic()
    assert client.get("/t/acme/scim/v1/Users", headers=AUTH).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert client.post("/_admin/config", json={}).json()["latency_ms"] == 300  # nothing asked, nothing changed
    assert client.post("/_admin/config", json={"latency_ms": -1}).status_code == 422
    assert client.post("/_admin/config", json={"latency_ms": 0}).json()["latency_ms"] == 0


def test_latency_comes_before_a_faults_answer():
    client = make_client(latency_ms=200)
    client.post("/_admin/faults", json={"status": 503, "times": 1})
    started = time.monotonic()
    assert client.get("/scim/v2/Users", headers=AUTH).status_code == 503
    assert time.monotonic() - started >= 0.2


async def test_hundreds_of_requests_wait_at_once_and_are_counted_in_flight():
    app = create_app(TargetConfig(token=TOKEN))
    transport = httpx.ASGITransport(app=app)
    async with TargetAdmin("http://target", transport=transport) as admin, \
            httpx.AsyncClient(transport=transport, base_url="http://target", headers=AUTH) as scim:
        assert (await admin.set_latency(400))["latency_ms"] == 400
        paths = ["/scim/v2/Users"] * 150 + ["/t/acme/scim/v2/Users"] * 100 + ["/t/globex/scim/v1/Users"] * 50
        started = time.monotonic()
        calls = [asyncio.create_task(scim.get(p)) for p in paths]
        await asyncio.sleep(0.2)
        during = await admin.inflight()
        assert {t: g["current"] for t, g in during.items()} == {"default": 150, "acme": 100, "globex": 50, "*": 300}
        assert all(r.status_code == 200 for r in await asyncio.gather(*calls))
        assert time.monotonic() - started < 3  # 300 x 0.4 s one after the other would take 120 s
        after = await admin.inflight()
        assert after == {"default": {"current": 0, "peak": 150}, "acme": {"current": 0, "peak": 100},
                         "globex": {"current": 0, "peak": 50}, "*": {"current": 0, "peak": 300}}
        await admin.set_latency(0)
        assert await admin.reset_inflight() == {t: {"current": 0, "peak": 0} for t in after}


async def test_inflight_counts_until_the_answer_is_sent_and_resets_to_current():
    app = create_app(TargetConfig(token=TOKEN))
    transport = httpx.ASGITransport(app=app)
    async with TargetAdmin("http://target", transport=transport) as admin, \
            httpx.AsyncClient(transport=transport, base_url="http://target", headers=AUTH) as scim:
        await admin.add_fault(path_regex="/slow", delay_s=0.5, times=2)
        slow = [asyncio.create_task(scim.get(f"/t/acme/scim/v2/Users/slow{i}")) for i in range(2)]
        quick = await scim.get("/t/acme/scim/v2/Users")
        assert quick.status_code == 200
        await asyncio.sleep(0.1)
        gauges = await admin.reset_inflight()
        assert gauges["acme"] == {"current": 2, "peak": 2} and gauges["*"] == {"current": 2, "peak": 2}
        assert [r.status_code for r in await asyncio.gather(*slow)] == [404, 404]
        assert (await admin.inflight())["acme"] == {"current": 0, "peak": 2}
        assert (await admin.reset_inflight())["acme"] == {"current": 0, "peak": 0}


def test_health_and_admin_are_not_in_flight():
    client = make_client()
    client.get("/health")
    client.get("/_admin/users")
    assert client.get("/_admin/inflight").json() == {"*": {"current": 0, "peak": 0}}


# --- configuration -----------------------------------------------------------------------------

def test_cli_latency_and_log_entries(monkeypatch):
    args = parse_args([])
    assert (args.latency_ms, args.log_entries) == (0, 10_000)
    args = parse_args(["--latency-ms", "500", "--log-entries", "100000"])
    assert (args.latency_ms, args.log_entries) == (500, 100_000)
    monkeypatch.setenv("DEMO_SCIM_LATENCY_MS", "20")
    monkeypatch.setenv("DEMO_SCIM_LOG_ENTRIES", "7")
    assert (parse_args([]).latency_ms, parse_args([]).log_entries) == (20, 7)


@pytest.mark.parametrize("config", [{"latency_ms": -1}, {"log_entries": 0}])
def test_config_refuses_nonsense(config):
    with pytest.raises(ValueError):
        TargetConfig(**config)


# --- request log -------------------------------------------------------------------------------

def test_log_capacity_is_a_setting():
    client = make_client(log_entries=5)
    for i in range(8):
        client.get(f"/scim/v2/Users/u{i}", headers=AUTH)
    body = client.get("/_admin/requests").json()
    assert body["last_seq"] == 8 and [e["seq"] for e in body["requests"]] == [4, 5, 6, 7, 8]
    assert [e["seq"] for e in client.get("/_admin/requests?since=6").json()["requests"]] == [7, 8]
    assert client.get("/_admin/requests?since=8").json()["requests"] == []
    assert client.get("/_admin/requests?since=99").json()["requests"] == []
    assert [e["seq"] for e in client.get("/_admin/requests?since=-3").json()["requests"]] == [4, 5, 6, 7, 8]
    assert client.get("/_admin/config").json()["log_entries"] == 5
    client.post("/_admin/reset")
    client.get("/scim/v2/Users", headers=AUTH)
    assert [e["seq"] for e in client.get("/_admin/requests?since=0").json()["requests"]] == [9]


def test_since_reads_only_what_it_returns_at_100000_entries():
    log = RequestLog(100_000)
    for i in range(120_000):
        log.start("GET", f"/scim/v2/Users/{i}", "", {}, b"")
    assert len(log.entries) == 100_000 and log.since(0)[0]["seq"] == 20_001
    started = time.perf_counter()
    for _ in range(1000):
        tail = log.since(119_990)
    per_call = (time.perf_counter() - started) / 1000
    assert [e["seq"] for e in tail] == list(range(119_991, 120_001))
    assert per_call < 0.001, per_call  # a scan of 100,000 entries takes several ms


# --- userName index ----------------------------------------------------------------------------

def _find(client, user_name: str) -> list[str]:
    r = client.get("/scim/v2/Users", params={"filter": f'userName eq "{user_name}"'}, headers=AUTH)
    assert r.status_code == 200, r.text
    return [u["id"] for u in r.json()["Resources"]]


def test_username_lookups_follow_renames_deletes_and_resets():
    client = make_client()
    uid = client.post("/scim/v2/Users", json={"userName": "Old@Example.com"}, headers=AUTH).json()["id"]
    assert _find(client, "old@example.COM") == [uid]
    client.put(f"/scim/v2/Users/{uid}", json={"userName": "new@example.com"}, headers=AUTH)
    assert _find(client, "old@example.com") == [] and _find(client, "NEW@example.com") == [uid]
    assert client.post("/scim/v2/Users", json={"userName": "old@example.com"}, headers=AUTH).status_code == 201
    assert client.post("/scim/v2/Users", json={"userName": "new@example.com"}, headers=AUTH).status_code == 409
    client.patch(f"/scim/v2/Users/{uid}", headers=AUTH, json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "userName", "value": "patched@example.com"}]})
    assert _find(client, "new@example.com") == [] and _find(client, "patched@example.com") == [uid]
    client.delete(f"/scim/v2/Users/{uid}", headers=AUTH)
    assert _find(client, "patched@example.com") == []
    client.post("/_admin/reset")
    assert _find(client, "old@example.com") == []
    quoted = client.post("/scim/v2/Users", json={"userName": 'o"neil\\x'}, headers=AUTH).json()["id"]
    assert _find(client, 'o\\"neil\\\\x') == [quoted]


def test_duplicates_without_unique_usernames_keep_creation_order():
    client = TestClient(create_app(TargetConfig(token=TOKEN, quirks=frozenset({"no-unique-username"}))))
    first = client.post("/scim/v2/Users", json={"userName": "dup@example.com"}, headers=AUTH).json()["id"]
    other = client.post("/scim/v2/Users", json={"userName": "other@example.com"}, headers=AUTH).json()["id"]
    second = client.post("/scim/v2/Users", json={"userName": "DUP@example.com"}, headers=AUTH).json()["id"]
    client.put(f"/scim/v2/Users/{other}", json={"userName": "dup@example.com"}, headers=AUTH)
    assert _find(client, "dup@example.com") == [first, other, second]
    groups = client.get("/scim/v2/Groups", params={"filter": 'displayName eq "x"'}, headers=AUTH)
    assert groups.json()["totalResults"] == 0
