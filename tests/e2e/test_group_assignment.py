"""Assignment by group (issue 3, point 1): an Okta group assigned to the app provisions and deactivates its members
as individual assignments would. Okta keeps a GROUP-scoped app user per member and writes
`application.user_membership.*` as members join and leave; the bridge follows the app users. Every service is a
real process; the outcome is read back from the demo SCIM target."""

from __future__ import annotations

import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually
from tests.e2e.scenario import Scenario, assert_no_secret, dumps, start_scenario

pytestmark = pytest.mark.e2e

MEMBERS = ("ada.lovelace@example.com", "alan.turing@example.com", "grace.hopper@example.com")


async def _applied(sc: Scenario, login: str, event_type: str, scim_methods: set[str]) -> list[dict]:
    """Waits for an `applied` audit record of `login` caused by `event_type` with one of `scim_methods`."""
    async def check():
        return [r for r in await sc.audit(user=sc.users[login], status="applied")
                if r.get("event_type") == event_type and r.get("scim_method") in scim_methods
                and r.get("app_id") == sc.app_id]
    return await eventually(check, 60, f"applied {event_type} ({'/'.join(sorted(scim_methods))}) for {login}")


async def _settled_active(sc: Scenario, okta: SimulatorAdmin, login: str, marker: str) -> dict:
    """A barrier without timing: a profile change of `login` made now is seen in the target only after every
    earlier event of the log for that user was handled; then the account must still be active."""
    await okta.update_profile(sc.users[login], {"firstName": marker})

    async def renamed():
        accounts = (await sc.target_users()).get(login, [])
        return accounts[0] if len(accounts) == 1 and accounts[0]["name"]["givenName"] == marker else None
    account = await eventually(renamed, 90, f"{login} renamed to {marker}")
    assert account["active"] is True, f"{login} was deactivated: {account}"
    return account


async def test_assigned_group_provisions_joiners_and_deactivates_leavers(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, preassigned=1)  # initial sync done: the rest by the log
        group = await okta.create_group("Engineering")
        for login in MEMBERS:
            await okta.add_group_member(group, await sc.new_user(login))
        assert not set(MEMBERS) & (await sc.target_users()).keys(), "provisioned before the group was assigned"

        await okta.assign_group(sc.app_id, group)
        for login in MEMBERS:
            account = await sc.wait_active(login)
            assert account["externalId"] == sc.users[login]

        joiner = "edsger.dijkstra@example.com"
        await okta.add_group_member(group, await sc.new_user(joiner))
        await sc.wait_active(joiner)

        leaver = MEMBERS[0]
        await okta.remove_group_member(group, sc.users[leaver])
        await sc.wait_active(leaver, active=False)
        for login in (*MEMBERS[1:], joiner):
            assert (await sc.target_users())[login][0]["active"] is True

        await sc.assert_one_account_each()
        assert "DELETE" not in {r["method"] for r in await target.requests()}, "a leaver is deactivated, not deleted"

        for login in (*MEMBERS, joiner):
            created = await _applied(sc, login, "application.user_membership.add", {"POST"})
            assert created[0]["scim_status"] == 201
        await _applied(sc, leaver, "application.user_membership.remove", {"PUT", "PATCH"})
        assert not await sc.audit(status="dead_lettered")
        assert_no_secret(stack, dumps(await sc.audit()))


async def test_direct_assignment_outlives_the_group_and_unassigning_the_group(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, preassigned=1)  # initial sync done: the rest by the log
        group = await okta.create_group("Sales")
        both, only_group = MEMBERS[0], MEMBERS[1:]
        for login in MEMBERS:
            await okta.add_group_member(group, await sc.new_user(login))
        await okta.assign_user(sc.app_id, sc.users[both])
        await okta.assign_group(sc.app_id, group)
        for login in MEMBERS:
            await sc.wait_active(login)

        # leaving the group keeps the direct assignment: Okta writes no membership removal, the account stays
        await okta.remove_group_member(group, sc.users[both])
        await _settled_active(sc, okta, both, "AfterLeaving")

        await okta.unassign_group(sc.app_id, group)
        for login in only_group:
            await sc.wait_active(login, active=False)
        await _settled_active(sc, okta, both, "AfterUnassign")

        await sc.assert_one_account_each()
        assert await sc.posts_for(both) == 1, "one account for a user assigned both directly and by group"
        assert "DELETE" not in {r["method"] for r in await target.requests()}

        for login in only_group:
            await _applied(sc, login, "application.user_membership.add", {"POST"})
            await _applied(sc, login, "application.user_membership.remove", {"PUT", "PATCH"})
        await _applied(sc, both, "application.user_membership.add", {"POST"})
        both_planned = await sc.audit(user=sc.users[both], status="planned")
        assert not [r for r in both_planned if (r.get("detail") or "").startswith("deactivate")], dumps(both_planned)
        assert not await sc.audit(status="dead_lettered")
