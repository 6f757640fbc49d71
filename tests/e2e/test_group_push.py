"""Push Groups end to end: every service a real process, the demo target in both dialects, the truth read back from
the target over SCIM."""

from __future__ import annotations

import os

import httpx
import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually
from tests.e2e.scenario import Scenario, audit_records, dead_letters, quiet, start_scenario

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

    async def wait_members(self, name: str, expected: set[str], timeout: float = 180) -> None:
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
        shown = {m["value"]: m.get("display") for m in (await groups.named("Engineering"))["members"]}
        names = {u["id"]: u["userName"] for u in await sc.target.users()}
        assert shown == {i: names[i] for i in shown}, "members carry display (their userName), as Okta sends them"

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

        async def recreated():
            return [r for r in await audit_records(stack, group=group, status="applied")
                    if "deleted on the target: recreated" in (r.get("detail") or "")]
        await eventually(recreated, 30, "the recreation audited")

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


def reconfigure(stack, sc: Scenario, version: str, **connector) -> None:
    """An operator edits the connectors file and restarts the services that read it."""
    from tests.e2e.conftest import jira_connector

    names = [n for n in stack.processes if n.startswith(("translator", "scim_dispatcher", "queue_poller"))]
    for name in names:
        stack.processes[name].stop()
    stack.write_connectors([jira_connector(stack, sc.app_id, version, **connector)])
    for name in names:
        stack.restart(name)


async def provisioned(sc: Scenario, count: int) -> list[str]:
    ids = [await sc.new_user(login(n)) for n in range(count)]
    for user_id in ids:
        await sc.okta.assign_user(sc.app_id, user_id)
    for n in range(count):
        await sc.wait_active(login(n))
    return ids


async def test_a_refused_member_is_isolated_and_the_rest_of_the_batch_lands(stack):
    """Six provisioned members pushed at once in batches of 4; one account was deleted on the target side, so the
    target refuses its batch (400): the batch is split until that member is alone; the others land, the refused one
    is audited as failed and dead-lettered with the reason."""
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target)
        ids = await provisioned(sc, 6)
        group = await okta.create_group("Batch")
        for user_id in ids:
            await okta.add_group_member(group, user_id)
        groups = Groups(sc, "v1")

        await quiet(stack)  # no plan left in flight that would recreate the account deleted below
        gone = (await sc.target_users())[login(2)][0]
        assert (await groups.call("DELETE", f"/Users/{gone['id']}")).status_code == 204
        reconfigure(stack, sc, "v1", push_groups=["Batch"], membership_batch_size=4)
        await groups.wait_members("Batch", {login(n) for n in (0, 1, 3, 4, 5)})

        async def refused():
            return [r for r in await audit_records(stack, group=group, status="dead_lettered")
                    if r.get("okta_user_id") == ids[2]]
        (record,) = await eventually(refused, 60, "the refused member dead-lettered")
        assert "add refused" in record["detail"] and "400" in record["detail"]
        letters = [h for h, body in await dead_letters(stack) if ids[2].encode() in body]
        assert letters and "add refused" in letters[0]["x-bridge-reason"]
        patches = [r for r in await target.requests() if r["method"] == "PATCH" and "/Groups/" in r["path"]]
        assert [p["status"] for p in patches].count(400) >= 2, "the batch was split (several refused tries)"
        assert len(patches) <= 8, f"{len(patches)} PATCHes for 6 members"


async def test_unpushing_leaves_the_target_group_and_deleting_it_is_an_audited_command(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = Scenario(stack, okta, target)
        sc.app_id = await okta.create_app("Jira", "jira")
        group = await okta.create_group("Contractors")
        await start_scenario_with(stack, sc, "v2", push_groups=[group])  # by id
        ids = await provisioned(sc, 2)
        for user_id in ids:
            await okta.add_group_member(group, user_id)
        groups = Groups(sc, "v2")
        await groups.wait_members("Contractors", {login(0), login(1)})

        refused = _delete_group(stack, group)
        assert refused.returncode == 2 and "still pushed" in refused.stderr

        reconfigure(stack, sc, "v2", push_groups=[])

        async def unlinked():
            return [r for r in await audit_records(stack, group=group, status="applied")
                    if "unlinked" in (r.get("detail") or "")]
        await eventually(unlinked, 60, "group unlinked after it left push_groups")
        await okta.remove_group_member(group, ids[0])  # no longer followed
        await okta.assign_user(sc.app_id, await sc.new_user("late.user@example.com"))
        await sc.wait_active("late.user@example.com")
        assert await groups.members("Contractors") == {login(0), login(1)}, "an unpushed group is left in place"

        # a connectors file with another partition count than the pool's recorded one: refused, nothing published
        import yaml

        other = stack.workdir / "connectors-other-count.yaml"
        doc = yaml.safe_load((stack.workdir / "connectors.yaml").read_text())
        pool = next(iter(doc.get("pools") or {"default": {}}))
        doc.setdefault("pools", {}).setdefault(pool, {})["partitions"] = 3
        other.write_text(yaml.safe_dump(doc))
        miscounted = _delete_group(stack, group, CONNECTORS_FILE=str(other))
        assert miscounted.returncode == 2 and "partitions" in miscounted.stderr, miscounted.stdout + miscounted.stderr
        assert await groups.named("Contractors") is not None

        run = _delete_group(stack, group)
        assert run.returncode == 0, run.stdout + run.stderr
        assert await groups.named("Contractors") is None
        trail = await audit_records(stack, group=group)
        asked = [r for r in trail if r["service"] == "operator-cli"]
        assert asked and "requested by ci-operator" in asked[0]["detail"]
        deleted = [r for r in trail if r["step"] == "applied" and "deleted target group" in (r.get("detail") or "")]
        assert deleted and deleted[0]["event_type"] == "operator:delete-group by ci-operator"


def _delete_group(stack, group: str, **extra_env: str):
    import subprocess
    import sys

    env = {**stack.service_env("cli"), "USER": "ci-operator", **extra_env}
    return subprocess.run([sys.executable, "-m", "bridgectl", "delete-group", "--app", "jira", "--group",
                           group, "--yes"], env=env, capture_output=True, text=True, timeout=120)


async def test_a_target_without_groups_fails_clearly_and_users_are_still_provisioned(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        await target.add_fault(404, path_regex=r"/Groups")  # this target has no /Groups at all
        sc = Scenario(stack, okta, target)
        sc.app_id = await okta.create_app("Jira", "jira")
        group = await okta.create_group("Everyone")
        await start_scenario_with(stack, sc, "v2", push_groups=["Everyone"])
        ids = await provisioned(sc, 2)
        await okta.add_group_member(group, ids[0])

        async def failed():
            return [r for r in await audit_records(stack, group=group, status="dead_lettered")]
        records = await eventually(failed, 60, "the group push dead-lettered")
        assert "does not support groups" in records[0]["detail"]
        await sc.wait_active(login(1))


async def test_link_existing_authority_okta_same_names_and_a_group_created_later(stack):
    """link_existing_groups links the target's own group of that name; authority okta makes its member list
    Okta's; two pushed groups with one name: the second fails clearly; a group created after start is pushed."""
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = Scenario(stack, okta, target)
        sc.app_id = await okta.create_app("Jira", "jira")
        groups = Groups(sc, "v2")
        local = (await groups.call("POST", "/Users", json=_user_body("v2", "local.admin@example.com"))).json()
        ops = (await groups.call("POST", "/Groups", json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops",
            "members": [{"value": local["id"]}]})).json()
        ops_group = await okta.create_group("Ops")
        first, second = await okta.create_group("Twin"), await okta.create_group("Twin")
        await start_scenario_with(stack, sc, "v2", push_groups=["Ops", first, second, "Later"],
                                  link_existing_groups=True, membership_authority="okta")
        ids = await provisioned(sc, 2)
        await okta.add_group_member(ops_group, ids[0])
        await groups.wait_members("Ops", {login(0)})  # the local member is gone: Okta is the authority
        assert (await groups.named("Ops"))["id"] == ops["id"], "linked, not created"

        async def twin_refused():
            return [r for r in await audit_records(stack, status="dead_lettered")
                    if "two pushed groups have the same name" in (r.get("detail") or "")]
        refused = await eventually(twin_refused, 180, "the second group named Twin refused")
        assert refused[0]["okta_group_id"] in (first, second)
        assert len([g for g in await groups.all() if g["displayName"] == "Twin"]) == 1

        later = await okta.create_group("Later")
        await okta.add_group_member(later, ids[1])
        await groups.wait_members("Later", {login(1)})


async def test_a_burst_of_joins_and_leaves_ends_in_oktas_membership_with_three_dispatchers(stack):
    import random

    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = Scenario(stack, okta, target)
        sc.app_id = await okta.create_app("Jira", "jira")
        group = await okta.create_group("Burst")
        stack.write_connectors([__import__("tests.e2e.conftest", fromlist=["x"]).jira_connector(
            stack, sc.app_id, "v2", push_groups=["Burst"], max_concurrency=8)])
        stack.start_services(dispatchers=3)
        ids = await provisioned(sc, 12)
        rng = random.Random(7)
        members: set[str] = set()
        for _ in range(120):
            user_id = rng.choice(ids)
            if user_id in members:
                await okta.remove_group_member(group, user_id)
                members.discard(user_id)
            else:
                await okta.add_group_member(group, user_id)
                members.add(user_id)
        expected = {login(ids.index(u)) for u in members}
        groups = Groups(sc, "v2")
        await groups.wait_members("Burst", expected, timeout=180)
        served = {r["service"] for r in await audit_records(stack, group=group, status="applied")}
        assert served == {"scim-dispatcher"}
        assert not await dead_letters(stack)


# 5,000 takes about 10 minutes here, most of it provisioning the members first; `make bench` pushes 5,000 (and
# 50 x 100) and reports peak RSS. GROUP_TEST_SIZE=5000 runs this test at full size.
LARGE_GROUP = int(os.environ.get("GROUP_TEST_SIZE", "400"))


async def test_a_large_group_is_pushed_in_batched_patches(stack):
    """Members provisioned by the initial sync, then pushed in PATCHes of 100 (the default batch); Okta's member
    listing takes calls of 200 from the groups bucket. Peak RSS of each service is printed (the memory target lives
    in ``make bench``)."""
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = Scenario(stack, okta, target)
        sc.app_id = await okta.create_app("Jira", "jira")
        group = await okta.create_group("Everyone")
        for n in range(LARGE_GROUP):
            user_id = await okta.create_user({"login": login(n), "email": login(n), "firstName": "M",
                                              "lastName": str(n)})
            await okta.assign_user(sc.app_id, user_id)
            await okta.add_group_member(group, user_id)
        await start_scenario_with(stack, sc, "v2", max_concurrency=16)

        async def all_provisioned():
            return len(await target.users()) >= LARGE_GROUP
        await eventually(all_provisioned, 900, f"{LARGE_GROUP} users provisioned")
        before = (await okta.stats())
        reconfigure(stack, sc, "v2", max_concurrency=16, push_groups=["Everyone"])
        groups = Groups(sc, "v2")

        async def complete():
            found = await groups.named("Everyone")
            return found is not None and len(found.get("members") or []) == LARGE_GROUP
        await eventually(complete, 600, f"a target group with {LARGE_GROUP} members")
        patches = [r for r in await target.requests() if r["method"] == "PATCH" and "/Groups/" in r["path"]]
        assert LARGE_GROUP // 100 <= len(patches) <= LARGE_GROUP // 100 + 2, f"{len(patches)} membership PATCHes"
        calls = _delta(before, await okta.stats())
        print("okta calls by bucket during the push:", calls)
        pages = -(-LARGE_GROUP // 200)
        assert pages <= calls.get("groups", 0) <= pages + 2, "member listing: limit=200 from the groups bucket"
        for name, process in stack.processes.items():
            print(f"{name}: peak RSS {_peak_rss_mb(process.proc.pid)} MB")


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _delta(before: dict, after: dict) -> dict:
    calls_before, calls_after = before.get("callsByBucket", {}), after.get("callsByBucket", {})
    return {k: v - calls_before.get(k, 0) for k, v in calls_after.items() if v - calls_before.get(k, 0)}


async def test_group_push_to_pypis_scim2_server(stack, scim2_server):
    """An independent SCIM 2.0 server: the pushed group is created there with its provisioned members, follows a
    join and a leave, and a rename."""
    from tests.conftest import SCIM2_SERVER_TOKEN

    stack.start_fixtures()
    stack.extra_env["S2_TOKEN"] = SCIM2_SERVER_TOKEN
    headers = {"Authorization": f"Bearer {SCIM2_SERVER_TOKEN}"}
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = Scenario(stack, okta, target)
        sc.app_id = await okta.create_app("Jira", "jira")
        group = await okta.create_group("Platform")
        ids = []
        for n in range(3):
            ids.append(await sc.new_user(login(n)))
            await okta.assign_user(sc.app_id, ids[-1])
        for user_id in ids[:2]:
            await okta.add_group_member(group, user_id)
        stack.write_connectors([{
            "okta_app_id": sc.app_id, "name": "jira", "base_url": scim2_server + "/", "scim_version": "2.0",
            "auth": {"type": "header", "header_name": "Authorization", "value_env": "S2_TOKEN",
                     "value_prefix": "Bearer "}, "push_groups": ["Platform"]}])
        stack.start_services()

        async def members(name: str) -> set[str] | None:
            async with httpx.AsyncClient() as http:
                found = (await http.get(f"{scim2_server}/Groups", headers=headers)).json().get("Resources", [])
                users = (await http.get(f"{scim2_server}/Users", headers=headers)).json().get("Resources", [])
            names = {u["id"]: u["userName"].lower() for u in users}
            match = [g for g in found if g.get("displayName") == name]
            return {names.get(m["value"], m["value"]) for m in match[0].get("members") or []} if match else None

        async def wait(name: str, expected: set[str]):
            async def check():
                return await members(name) == expected
            await eventually(check, 90, f"scim2-server group {name!r} with {sorted(expected)}")

        await wait("Platform", {login(0), login(1)})
        await okta.add_group_member(group, ids[2])
        await okta.remove_group_member(group, ids[0])
        await wait("Platform", {login(1), login(2)})
        await okta.update_group(group, name="Platform Team")
        await wait("Platform Team", {login(1), login(2)})
        assert not await dead_letters(stack)
