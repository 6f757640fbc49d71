"""Dispatcher pools (Okta's "Connect to these agents"): a dispatcher serves only the pools it is started with; the
work of a pool with no dispatcher running waits durably and never holds up another pool."""

from __future__ import annotations

import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_bridge.mongo import connect
from okta_bridge.stores.partitions import MongoPartitions
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually, jira_connector
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


async def test_an_apps_limit_holds_across_replicas_and_each_replica_keeps_its_own(stack):
    """Three apps (three tenants of the target), ``max_concurrency`` 2 each, every answer 250 ms late. One dispatcher
    with an in-flight limit of 3 never has more than 3 requests open at the target, although the apps would allow 6;
    with a second replica the apps' limits still hold (permits shared through the database), while both replicas
    together go above one replica's 3. The
    target's own in-flight gauges and request log are the proof."""
    stack.start_fixtures()
    limit, in_flight, users = 2, 3, 12
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        apps = [await okta.create_app(f"App {n}", f"app{n}") for n in range(3)]
        stack.write_connectors([
            {**jira_connector(stack, app, "v2"), "name": f"app{n}", "max_concurrency": limit,
             "base_url": f"{stack.target_url}/t/app{n}/scim/v2/"} for n, app in enumerate(apps)])
        stack.extra_env.update(DISPATCHER_MAX_IN_FLIGHT=str(in_flight))
        await target.set_latency(250)
        stack.start_services()

        async def wave(tag: str) -> None:
            ids = await okta.create_users([{"login": f"{tag}{i}@example.com", "email": f"{tag}{i}@example.com",
                                            "firstName": "P", "lastName": f"{i}"} for i in range(users)])
            await target.reset_inflight()
            for app in apps:
                await okta.assign_users(app, ids)

            async def provisioned():
                names = [u["userName"] for n in range(3) for u in await target.users(f"app{n}")]
                return sum(name.startswith(tag) for name in names) == 3 * users
            await eventually(provisioned, 120, f"wave {tag} provisioned in every app")

        await wave("one")
        gauges = await target.inflight()
        assert all(gauges[f"app{n}"]["peak"] <= limit for n in range(3)), gauges
        assert gauges["*"]["peak"] <= in_flight, gauges
        assert gauges["*"]["peak"] == in_flight, f"the replica never used its {in_flight} slots: {gauges}"

        stack.start_service("scim_dispatcher", "scim_dispatcher-2")
        client, db = connect(stack.mongodb_url, stack.mongodb_db)
        try:
            async def shared():  # the first replica hands the newcomer its share at its next renewal
                state = await MongoPartitions(db, stack.okta_url).read("default")
                return len({x.owner for x in state.leases if x.owner}) == 2
            await eventually(shared, 60, "both replicas own partitions")
        finally:
            await client.close()
        # permits move at renewals (every 3 s): the first replica gives back idle ones, the second takes them at its
        # next; slower answers keep the wave going long enough for that, on a busy machine too
        await target.set_latency(600)
        await wave("two")
        gauges = await target.inflight()
        assert all(gauges[f"app{n}"]["peak"] <= limit for n in range(3)), gauges
        assert gauges["*"]["peak"] <= 2 * in_flight, gauges
        assert gauges["*"]["peak"] > in_flight, f"two replicas never had more open than one may: {gauges}"
        # every request of the run is in the log with the tenant it went to, and each app saw each user once
        log = await target.requests()
        for n in range(3):
            posts = [r for r in log if r["tenant"] == f"app{n}" and r["method"] == "POST" and r.get("status") == 201]
            assert len(posts) == 2 * users, f"app{n}: {len(posts)} creates"
