"""Poller high availability: two replicas, one polls (the lease), the other takes over when it is killed, and no
event is lost or published twice."""

from __future__ import annotations

from collections import Counter

import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually
from tests.e2e.scenario import audit_records, start_scenario

pytestmark = pytest.mark.e2e


async def test_a_standby_poller_takes_over_when_the_leader_is_killed(stack):
    stack.start_fixtures()
    stack.extra_env["POLLER_LEASE_TTL_S"] = "3"
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, preassigned=1)
        stack.start_service("queue_poller", "queue_poller-2")

        async def standing_by():
            return "standing by" in stack.processes["queue_poller-2"].output()
        await eventually(standing_by, 30, "the second poller standing by")
        first = await sc.new_user("before.kill@example.com")
        await okta.assign_user(sc.app_id, first)
        await sc.wait_active("before.kill@example.com")

        stack.processes["queue_poller"].kill()  # SIGKILL: no release, the lease must expire

        async def took_over():
            return "lease token" in stack.processes["queue_poller-2"].output()
        await eventually(took_over, 30, "the standby poller took over")
        after = await sc.new_user("after.kill@example.com")
        await okta.assign_user(sc.app_id, after)
        await sc.wait_active("after.kill@example.com")
        await sc.assert_one_account_each()

        received = Counter(r["event_uuid"] for r in await audit_records(stack, status="received") if r["event_uuid"])
        twice = {uuid: n for uuid, n in received.items() if n > 1}
        assert not twice, f"events published more than once: {twice}"
