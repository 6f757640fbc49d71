"""Push Groups end to end: every service a real process, the demo target in both dialects, the truth read back from
the target over SCIM."""

from __future__ import annotations

import httpx
import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually
from tests.e2e.scenario import Scenario, audit_records, dead_letters, start_scenario

pytestmark = pytest.mark.e2e


class Groups:
    """The target's groups and accounts, read over its own SCIM API (as any client would)."""

    def __init__(self, sc: Scenario, version: str) -> None:
        self.sc, self.base = sc, f"{sc.stack.target_url}/scim/{version}"
        self.headers = {"Authorization": f"Bearer {sc.stack.target_token}"}

    async def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.request(method, self.base + path, headers=self.headers, **kwargs)

    async def all(self) -> list[dict]:
        return (await self.call("GET", "/Groups", params={"count": 1000})).json()["Resources"]

    async def named(self, name: str) -> dict | None:
        found = [g for g in await self.all() if g["displayName"] == name]
        assert len(found) <= 1, f"{len(found)} target groups named {name!r}"
        return found[0] if found else None

    async def members(self, name: str) -> set[str] | None:
        """userNames of the members of the target group ``name`` (None when there is no such group)."""
        group = await self.named(name)
        if group is None:
            return None
        users = {u["id"]: u["userName"].lower() for u in await self.sc.target.users()}
        return {users.get(m["value"], m["value"]) for m in group.get("members") or []}

    async def wait_members(self, name: str, expected: set[str], timeout: float = 90) -> None:
        async def check():
            return await self.members(name) == expected
        await eventually(check, timeout, f"target group {name!r} with members {sorted(expected)}")


def login(n: int) -> str:
    return f"member{n}.user@example.com"


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_a_pushed_group_follows_okta(stack, version):
    """Created by name, provisioned members only (others wait), joins and leaves, a rename, target-side members
    kept (additive), a target group deleted on the target recreated, and a group deleted in Okta unlinked."""
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = Scenario(stack, okta, target)
        sc.app_id = await okta.create_app("Jira", "jira")
        ids = [await sc.new_user(login(n)) for n in range(5)]
        group = await okta.create_group("Engineering")
        for n in range(3):
            await okta.add_group_member(group, ids[n])
        for n in range(2):
            await okta.assign_user(sc.app_id, ids[n])
        sc = await start_scenario_with(stack, sc, version, push_groups=["Engineering"])
        groups = Groups(sc, version)
        await groups.wait_members("Engineering", {login(0), login(1)})  # member2 is not provisioned: waits

        await okta.assign_user(sc.app_id, ids[2])
        await groups.wait_members("Engineering", {login(0), login(1), login(2)})

        # someone adds a local account to the group on the target side: additive authority keeps it
        local = (await groups.call("POST", "/Users", json=_user_body(version, "local.admin@example.com"))).json()
        await groups.call("PATCH", f"/Groups/{(await groups.named('Engineering'))['id']}",
                          json=_add_body(version, local["id"]))
        await okta.assign_user(sc.app_id, ids[3])
        await sc.wait_active(login(3))
        await okta.add_group_member(group, ids[3])
        await okta.remove_group_member(group, ids[0])
        await groups.wait_members("Engineering", {login(1), login(2), login(3), "local.admin@example.com"})

        await okta.update_group(group, name="Engineering Team")
        await groups.wait_members("Engineering Team", {login(1), login(2), login(3), "local.admin@example.com"})
        assert await groups.named("Engineering") is None

        # deleted on the target by someone: the next change recreates it, and the audit says so
        gone = await groups.named("Engineering Team")
        assert (await groups.call("DELETE", f"/Groups/{gone['id']}")).status_code == 204
        await okta.remove_group_member(group, ids[1])
        await groups.wait_members("Engineering Team", {login(2), login(3)})
        details = [r.get("detail") or "" for r in await audit_records(stack, group=group)]
        assert any("deleted on the target: recreated" in d for d in details), details

        # deleted in Okta: unlinked, the target group stays
        await okta.delete_group(group)

        async def unlinked():
            return [r for r in await audit_records(stack, group=group, status="applied")
                    if "unlinked" in (r.get("detail") or "")]
        await eventually(unlinked, 60, "group unlinked after its deletion in Okta")
        assert await groups.members("Engineering Team") == {login(2), login(3)}
        requests = await target.requests()
        posts = [r for r in requests if r["method"] == "POST" and r["path"].endswith("/Groups")]
        assert len(posts) == 2, "the group is created once, and once more after its deletion on the target"
        assert not await dead_letters(stack)


async def start_scenario_with(stack, sc: Scenario, version: str, **connector) -> Scenario:
    from tests.e2e.conftest import jira_connector

    stack.write_connectors([jira_connector(stack, sc.app_id, version, **connector)])
    stack.start_services()
    return sc


def _user_body(version: str, user_name: str) -> dict:
    schema = "urn:scim:schemas:core:1.0" if version == "v1" else "urn:ietf:params:scim:schemas:core:2.0:User"
    return {"schemas": [schema], "userName": user_name, "active": True,
            "name": {"givenName": "Local", "familyName": "Admin"}}


def _add_body(version: str, member: str) -> dict:
    if version == "v1":
        return {"schemas": ["urn:scim:schemas:core:1.0"], "members": [{"value": member}]}
    return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": member}]}]}
