"""Dead letters: kept as ids, type, version and reason only; listed, inspected, and replayed (audited) by planning
again from Okta's current state, so an old dead letter never brings back an old state."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually
from tests.e2e.scenario import audit_records, dead_letters, start_scenario

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_users(stack, rabbit_url):
    """Each process as its own RabbitMQ user with the documented rights only (README: RabbitMQ permissions); the
    topology command declares, the services may not (BROKER_DECLARE=false)."""
    import secrets
    import uuid
    from urllib.parse import unquote, urlsplit, urlunsplit

    from okta_bridge.topology import permissions_for

    vhost, parts, suffix = unquote(urlsplit(rabbit_url).path[1:]), urlsplit(rabbit_url), uuid.uuid4().hex[:6]
    roles = {"topology": "bridge-topology", "queue_poller": "bridge-poller", "translator": "bridge-translator",
             "scim_dispatcher": "bridge-dispatcher", "audit_recorder": "bridge-audit", "cli": "bridge-operator"}
    permissions = permissions_for(["default"])
    for process, role in roles.items():
        user, password = f"{role}-{suffix}", secrets.token_hex(8)
        subprocess.run(["rabbitmqctl", "-q", "add_user", user, password], check=True, capture_output=True, timeout=60)
        grant = permissions[role]
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, grant.configure, grant.write,
                        grant.read], check=True, capture_output=True, timeout=60)
        stack.broker_urls[process] = urlunsplit((parts.scheme, f"{user}:{password}@{parts.hostname}:"
                                                 f"{parts.port or 5672}", parts.path, "", ""))
    yield
    stack.stop()
    for role in roles.values():
        subprocess.run(["rabbitmqctl", "-q", "delete_user", f"{role}-{suffix}"], capture_output=True, timeout=60)


def ops(stack, *args: str) -> subprocess.CompletedProcess:
    env = {**stack.service_env("cli"), "USER": "ci-operator", "COLUMNS": "220"}
    return subprocess.run([sys.executable, "-m", "bridgectl", "dlq", *args], env=env,
                          capture_output=True, text=True, timeout=120)


async def test_dead_letters_are_listed_inspected_and_replayed_from_okta_current_state(stack, own_users):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target)
        # a create refused for good (400) is dead-lettered with the target's reason
        await target.add_fault(400, method="POST", path_regex=r"/Users$", times=1,
                               body={"Errors": [{"description": "department is required", "code": 400}]})
        refused = await sc.new_user("refused.once@example.com")
        await okta.assign_user(sc.app_id, refused)

        async def dead_lettered(user: str):
            return [r for r in await audit_records(stack, user=user, status="dead_lettered")]
        await eventually(lambda: dead_lettered(refused), 60, "the refused create dead-lettered")

        for process in ("queue_poller", "translator", "scim_dispatcher", "audit_recorder"):  # as in production
            env = stack.processes[process].env
            assert env["BROKER_DECLARE"] == "false" and env["RABBITMQ_URL"] == stack.broker_urls[process]
        listing = ops(stack, "list")
        assert listing.returncode == 0, listing.stderr
        line = next(l for l in listing.stdout.splitlines() if refused in l)
        letter_id = next(w for w in line.replace("│", " ").split() if len(w) == 12)
        assert "400" in line and "ScimOperationPlanned" in line
        shown = ops(stack, "show", letter_id)
        body = json.loads(shown.stdout)
        assert body["message"]["okta_user_id"] == refused and "department is required" in body["reason"]
        # what the queue holds: the ids, not the person (no userName, email or name from the plan)
        stored = b"".join(b for _, b in await dead_letters(stack))
        assert refused.encode() in stored and b"refused.once@example.com" not in stored and b"@example.com" not in stored

        replayed = ops(stack, "replay", letter_id)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        await sc.wait_active("refused.once@example.com")

        async def replay_audited():
            return await audit_records(stack, user=refused, status="replayed")
        trail = await eventually(replay_audited, 30, "the replay audited")
        assert "ci-operator" in trail[0]["detail"]
        assert letter_id not in ops(stack, "list").stdout

        # an update refused for good, then the user is deactivated: the replay plans from Okta's current state (a
        # deactivation), never the old update
        stale = await sc.new_user("stale.update@example.com")
        await okta.assign_user(sc.app_id, stale)
        await sc.wait_active("stale.update@example.com")
        await target.add_fault(400, method="PUT", path_regex=r"/Users/", times=1)
        await okta.update_profile(stale, {"firstName": "Changed"})
        await eventually(lambda: dead_lettered(stale), 60, "the refused update dead-lettered")
        await okta.deactivate_user(stale)
        await sc.wait_active("stale.update@example.com", active=False)
        replay_all = ops(stack, "replay", "--all")
        assert replay_all.returncode == 0, replay_all.stdout + replay_all.stderr

        old = max(r["plan_version"] for r in await dead_lettered(stale))

        async def replanned():
            return [r for r in await audit_records(stack, user=stale, status="applied")
                    if (r.get("plan_version") or 0) > old and r["service"] == "scim-dispatcher"
                    and r["event_type"] == "application.user_membership.update"]
        await eventually(replanned, 60, "the replay planned again with a newer version")
        await sc.wait_active("stale.update@example.com", active=False)
        assert "0 dead letter(s)" in ops(stack, "list").stdout
