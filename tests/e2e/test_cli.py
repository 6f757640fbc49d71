"""``bridgectl`` against live processes: the connector test against a real demo target (a hanging one included),
and on one running stack: status, preview, provision on demand, the audit, and the accidental-deactivation guard in
the case it exists for (a full sync that would deactivate most of an app), released from Okta's state."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import aio_pika
import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_bridge.contracts import AppSyncRequested, SyncReason
from okta_bridge.topology import EVENTS_EXCHANGE, SYNC_ROUTING_KEY
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually
from tests.e2e.scenario import start_scenario

pytestmark = pytest.mark.e2e


def bridgectl(stack, *args: str, env: dict | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    """``bridgectl`` as ``python -m bridgectl`` (the installed script is the same entry point)."""
    return subprocess.run([sys.executable, "-m", "bridgectl", *args],
                          env={**stack.service_env("cli"), "USER": "ci-operator", "COLUMNS": "220", **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def as_json(run: subprocess.CompletedProcess):
    return json.loads(run.stdout)


async def test_test_connector_reports_what_works_and_what_is_wrong(stack):
    stack.start_fixtures()
    good = {"okta_app_id": "0oagoodxxxxxxxxxxxxx", "name": "jira", "base_url": f"{stack.target_url}/scim/v1/",
            "auth": {"type": "header", "value_env": "DEMO_TARGET_TOKEN", "value_prefix": "Bearer "}}
    v2 = {**good, "okta_app_id": "0oav2xxxxxxxxxxxxxxx", "name": "confluence", "base_url": f"{stack.target_url}/scim/v2/"}
    bad = {**good, "okta_app_id": "0oabadxxxxxxxxxxxxxx", "name": "wrongtoken",
           "auth": {"type": "header", "value_env": "WRONG_TOKEN", "value_prefix": "Bearer "}}
    wrong_version = {**v2, "okta_app_id": "0oawrongvxxxxxxxxxxx", "name": "wrongversion", "scim_version": "1.1"}
    path = stack.write_connectors([good, v2, bad, wrong_version])
    env = {"WRONG_TOKEN": "not-the-token"}
    ok = bridgectl(stack, "test-connector", "confluence", "--no-okta", "--json", "--connectors-file", str(path), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert as_json(ok)["usable"] and as_json(ok)["announces"]["scim_version"] == "2.0"
    assert bridgectl(stack, "test-connector", "jira", "--no-okta", "--connectors-file", str(path),
                     env=env).returncode == 0
    refused = bridgectl(stack, "test-connector", "wrongtoken", "--no-okta", "--connectors-file", str(path), env=env)
    assert refused.returncode == 1 and "401" in refused.stdout and "refused the credentials" in refused.stdout
    assert "not-the-token" not in refused.stdout + refused.stderr
    version = bridgectl(stack, "test-connector", "wrongversion", "--no-okta", "--connectors-file", str(path), env=env)
    assert version.returncode == 1 and "wrong SCIM version" in version.stdout
    unknown = bridgectl(stack, "test-connector", "nosuchapp", "--connectors-file", str(path), env=env)
    assert unknown.returncode == 2 and "no app 'nosuchapp'" in unknown.stderr
    async with TargetAdmin(stack.target_url) as target:  # a target that hangs: the timeout fires, the report says so
        await target.add_fault(200, path_regex=r"ServiceProviderConfig", delay_s=30)
        hung = bridgectl(stack, "test-connector", "confluence", "--no-okta", "--timeout", "1", "--connectors-file",
                         str(path), env=env)
        await target.clear_faults()
    assert hung.returncode == 1 and "timeout" in hung.stdout


async def test_status_preview_provision_audit_and_the_guard_on_a_full_sync_that_would_empty_the_app(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, preassigned=6,
                                  connector={"guard": {"max_deactivations": 2, "window_s": 3600}})
        status = bridgectl(stack, "status", "--json")
        report = as_json(status)
        assert report["poller"]["leader"] and report["queues"]["translator.work"]["consumers"] >= 1, report
        assert report["dead_letters"] == 0 and "sources" in report

        # preview: what would be sent now for a provisioned user; nothing reaches the target
        writes_before = [r for r in await target.requests() if r["method"] != "GET"]
        preview = bridgectl(stack, "preview", "pre0.user@example.com", "--app", "jira", "--json")
        assert preview.returncode == 0, preview.stderr
        shown = as_json(preview)
        assert shown["plan"]["action"] == "upsert" and shown["would_send"], shown
        assert [r for r in await target.requests() if r["method"] != "GET"] == writes_before
        assert "Bearer" not in preview.stdout and "DEMO" not in preview.stdout
        assert bridgectl(stack, "preview", "nobody@example.com", "--app", "jira").returncode == 2

        # the case the guard exists for: the app emptied in Okta (the poller is stopped, so only the full sync sees
        # it), a full sync would deactivate all six; two go out, four are held, the app shows as paused
        stack.processes["queue_poller"].stop()
        for n in range(6):
            await okta.unassign_user(sc.app_id, sc.users[f"pre{n}.user@example.com"])
        connection = await aio_pika.connect(stack.rabbitmq_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EVENTS_EXCHANGE.name)
            sync = AppSyncRequested(org=stack.okta_url, app_id=sc.app_id, reason=SyncReason.OPERATOR,
                                    sync_id=uuid.uuid4().hex)
            await exchange.publish(aio_pika.Message(sync.model_dump_json().encode()), routing_key=SYNC_ROUTING_KEY)

        async def paused():
            run = bridgectl(stack, "guard", "list", "--json")
            guards = as_json(run) if run.stdout else []
            return run.returncode == 1 and guards and guards[0]["paused"] and guards[0]["held"] == 4 and guards
        await eventually(paused, 60, "the guard paused the app with four held")

        async def inactive() -> set[str]:
            return {u["userName"].lower() for u in await target.users() if u.get("active") is False}
        await eventually(lambda: _len(inactive, 2), 30, "two deactivations sent")
        await asyncio.sleep(2)
        assert len(await inactive()) == 2  # and no more
        status = bridgectl(stack, "status", "--json")
        assert status.returncode == 1 and any("guard paused: jira" in p for p in as_json(status)["problems"])

        # other changes keep flowing while paused: a new user provisioned on demand (the poller is stopped: only
        # bridgectl provision brings it), through the normal pipeline, audited
        newcomer = await sc.new_user("new.comer@example.com")
        await okta.assign_user(sc.app_id, newcomer)
        # `audit --follow` started before the change prints its steps as they arrive (one JSON record per line)
        follower = subprocess.Popen([sys.executable, "-m", "bridgectl", "audit", "--user", newcomer, "--follow",
                                     "--json"], env={**stack.service_env("cli"), "COLUMNS": "220"},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        provision = bridgectl(stack, "provision", "new.comer@example.com", "--app", "jira", "--wait", "60", "--json")
        assert provision.returncode == 0, provision.stdout + provision.stderr
        assert as_json(provision)["outcome"].startswith("applied")
        followed: list[dict] = []
        try:
            async def followed_applied():
                line = await asyncio.wait_for(asyncio.to_thread(follower.stdout.readline), 30)
                followed.append(json.loads(line))
                return followed[-1]["service"] == "scim-dispatcher" and followed[-1]["step"] == "applied"
            await eventually(followed_applied, 60, "audit --follow printed the applied step")
        finally:
            follower.terminate()
            follower.wait(10)
        asked = [r for r in followed if r["service"] == "operator-cli"]  # records land in batches, in any order
        assert len(asked) == 1 and asked[0]["actor"] == "ci-operator" and asked[0]["step"] == "received"
        assert {r["okta_user_id"] for r in followed} == {newcomer}
        assert len({r["id"] for r in followed}) == len(followed)  # each printed once
        await sc.wait_active("new.comer@example.com")
        trail = bridgectl(stack, "audit", "--user", newcomer, "--app", "jira", "--json")
        steps = [json.loads(line) for line in trail.stdout.splitlines()]
        assert {"operator-cli", "translator", "scim-dispatcher"} <= {s["service"] for s in steps}
        assert bridgectl(stack, "provision", "nobody@example.com", "--app", "jira").returncode == 2

        # release: each held key planned from Okta's state now: one was assigned again meanwhile and stays active
        held = as_json(bridgectl(stack, "guard", "held", "jira", "--json"))
        back = held[0]["user"]
        await okta.assign_user(sc.app_id, back)
        release = bridgectl(stack, "guard", "release", "jira", "--json")
        assert release.returncode == 0, release.stderr
        assert as_json(release)["by"] == "ci-operator" and len(as_json(release)["users"]) == 4
        login_of = {v: k for k, v in sc.users.items()}
        await eventually(lambda: _len(inactive, 5), 60, "the three still unassigned deactivated")
        assert login_of[back] not in await inactive()
        assert bridgectl(stack, "guard", "list").returncode == 0
        again = bridgectl(stack, "guard", "release", "jira")
        assert again.returncode == 2 and "not set" in again.stderr


async def _len(probe, n: int) -> bool:
    return len(await probe()) == n
