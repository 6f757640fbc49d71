"""Dead letters: listed with their reason, inspected, replayed (audited) through the same version check, so an old
dead letter never overwrites newer state."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually
from tests.e2e.scenario import audit_records, start_scenario

pytestmark = pytest.mark.e2e


def ops(stack, *args: str) -> subprocess.CompletedProcess:
    env = {**stack.service_env("cli"), "USER": "ci-operator", "COLUMNS": "220"}
    return subprocess.run([sys.executable, "-m", "okta_bridge.ops", "dead-letters", *args], env=env,
                          capture_output=True, text=True, timeout=120)


async def test_dead_letters_are_listed_inspected_and_replayed_through_the_version_check(stack):
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

        listing = ops(stack, "list")
        assert listing.returncode == 0, listing.stderr
        line = next(l for l in listing.stdout.splitlines() if refused in l)
        letter_id = next(w for w in line.replace("│", " ").split() if len(w) == 12)
        assert "400" in line and "ScimOperationPlanned" in line
        shown = ops(stack, "show", letter_id)
        body = json.loads(shown.stdout)
        assert body["message"]["okta_user_id"] == refused and "department is required" in body["reason"]

        replayed = ops(stack, "replay", letter_id)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        await sc.wait_active("refused.once@example.com")

        async def replay_audited():
            return await audit_records(stack, user=refused, status="replayed")
        trail = await eventually(replay_audited, 30, "the replay audited")
        assert "ci-operator" in trail[0]["detail"]
        assert letter_id not in ops(stack, "list").stdout

        # an update refused for good, then the user is deactivated: replaying the old update changes nothing
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

        async def skipped():
            return [r for r in await audit_records(stack, user=stale, status="skipped_stale")]
        await eventually(skipped, 60, "the replayed old update skipped as stale")
        await sc.wait_active("stale.update@example.com", active=False)
        assert "0 dead letter(s)" in ops(stack, "list").stdout
