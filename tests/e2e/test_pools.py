"""Dispatcher pools (Okta's "Connect to these agents"): a dispatcher serves only the pools it is started with; the
work of a pool with no dispatcher running waits durably and never holds up another pool."""

from __future__ import annotations

import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import jira_connector
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e


async def test_a_pool_without_a_dispatcher_waits_and_never_holds_up_another(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = Scenario(stack, okta, target)
        zone_a, zone_b = await okta.create_app("Jira", "jira"), await okta.create_app("Wiki", "wiki")
        stack.write_connectors([
            {**jira_connector(stack, zone_a), "name": "jira", "pool": "zone-a"},
            {**jira_connector(stack, zone_b, "v2"), "name": "wiki", "pool": "zone-b"}])
        stack.extra_env["DISPATCHER_POOLS"] = "zone-a"  # zone-b's dispatcher is down (or not started yet)
        stack.start_services()
        for n in range(3):
            await okta.assign_user(zone_a, await sc.new_user(f"a{n}.user@example.com"))
            await okta.assign_user(zone_b, await sc.new_user(f"b{n}.user@example.com"))
        for n in range(3):
            await sc.wait_active(f"a{n}.user@example.com")
        assert not [u for u in (await sc.target_users()) if u.startswith("b")], "zone-b has no dispatcher"

        stack.start_service("scim_dispatcher", "scim_dispatcher-zone-b", env={"DISPATCHER_POOLS": "zone-b"})
        for n in range(3):
            await sc.wait_active(f"b{n}.user@example.com")
        await sc.assert_one_account_each()
