"""A SCIM target that misbehaves: every fault has its defined outcome, and the target ends as Okta holds it."""

from __future__ import annotations

import asyncio

import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually
from tests.e2e.scenario import assert_no_secret, dead_letters, dumps, start_scenario

pytestmark = pytest.mark.e2e

USERS_PATH = r"^/scim/v1/Users$"
USER_PATH = r"^/scim/v1/Users/[^/]+$"


async def test_5xx_429_and_html_are_retried_and_land_once(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target)
        await target.add_fault(500, method="POST", path_regex=USERS_PATH, times=1)
        await target.add_fault(429, method="GET", path_regex=USERS_PATH, headers={"Retry-After": "1"}, times=1)
        await target.add_fault(502, method="PUT", path_regex=USER_PATH, content_type="text/html",
                               body="<html><body><h1>502 Bad Gateway</h1></body></html>", times=1)
        user = await sc.new_user("ada.lovelace@example.com")
        await okta.assign_user(sc.app_id, user)
        await sc.wait_active("ada.lovelace@example.com")
        await okta.update_profile(user, {"firstName": "Augusta"})
        async def updated():
            accounts = (await sc.target_users())["ada.lovelace@example.com"]
            return accounts[0]["name"]["givenName"] == "Augusta"
        await eventually(updated, 90, "update after a 502 HTML answer")
        retried = [r for r in await sc.audit(user=user, status="retried")]
        assert {r["scim_status"] for r in retried} >= {500, 429, 502}
        assert all("html" not in (r["detail"] or "").lower() or "502" in r["detail"] for r in retried)
        assert await sc.posts_for("ada.lovelace@example.com") == 1
        await sc.assert_one_account_each()


async def test_create_whose_answer_was_lost_is_not_repeated(stack):
    """Timeout after the target wrote, and an empty 201: the retry looks up first and links, never POSTs twice."""
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, connector={"timeout_s": 2})
        await target.add_fault(None, method="POST", path_regex=USERS_PATH, delay_s=4, times=1)
        slow = await sc.new_user("alan.turing@example.com")
        await okta.assign_user(sc.app_id, slow)
        await sc.wait_active("alan.turing@example.com")
        await target.add_fault(None, method="POST", path_regex=USERS_PATH, empty_body=True, times=1)
        empty = await sc.new_user("grace.hopper@example.com")
        await okta.assign_user(sc.app_id, empty)
        account = await sc.wait_active("grace.hopper@example.com")
        assert account["externalId"] == empty
        await sc.assert_one_account_each()
        assert await sc.posts_for("alan.turing@example.com") == 1
        steps = [r["step"] for r in await sc.audit(user=slow)]
        assert "retried" in steps and "applied" in steps


async def test_401_opens_the_circuit_holds_the_backlog_and_drains(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, env={"DISPATCHER_PROBE_INTERVAL_S": "1"})
        await target.add_fault(401, content_type="text/plain", body="Unauthorized")
        logins = [f"held{n}.user@example.com" for n in range(3)]
        for login in logins:
            await okta.assign_user(sc.app_id, await sc.new_user(login))
        await eventually(lambda: sc.audit(status="held"), 60, "held audit records")
        await target.clear_faults()
        for login in logins:
            await sc.wait_active(login)
        assert not await sc.audit(status="dead_lettered")
        assert not await dead_letters(stack)
        held = await sc.audit(status="held")
        assert all("401" in (r["detail"] or "") for r in held)
        assert_no_secret(stack, dumps(await sc.audit()))


async def test_404_on_a_known_id_recreates_and_relinks(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, preassigned=1)
        login = "pre0.user@example.com"
        old = (await sc.target_users())[login][0]
        import httpx
        async with httpx.AsyncClient() as http:  # someone deletes the account on the target side
            r = await http.delete(f"{stack.target_url}/scim/v1/Users/{old['id']}",
                                  headers={"Authorization": f"Bearer {stack.target_token}"})
            assert r.status_code == 204
        await okta.update_profile(sc.users[login], {"lastName": "Recreated"})
        async def recreated():
            accounts = (await sc.target_users()).get(login, [])
            return accounts and accounts[0]["name"]["familyName"] == "Recreated" and accounts[0]["id"] != old["id"]
        await eventually(recreated, 60, "recreated after 404")
        await sc.assert_one_account_each()


async def test_409_on_create_links_the_existing_account(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target)
        await target.seed_user({"userName": "barbara.liskov@example.com", "active": False,
                                "name": {"givenName": "B", "familyName": "L"}})
        empty = {"schemas": ["urn:scim:schemas:core:1.0"], "totalResults": 0, "itemsPerPage": 0,
                 "startIndex": 1, "Resources": []}
        await target.add_fault(200, method="GET", path_regex=USERS_PATH, body=empty,
                               content_type="application/json", times=1)
        user = await sc.new_user("barbara.liskov@example.com")
        await okta.assign_user(sc.app_id, user)
        account = await sc.wait_active("barbara.liskov@example.com")
        assert account["externalId"] == user
        await sc.assert_one_account_each()
        statuses = [r["status"] for r in await target.requests() if r["method"] == "POST"]
        assert 409 in statuses


async def test_other_4xx_is_dead_lettered_with_its_reason_and_blocks_nobody(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target)
        bad = await sc.new_user("ken.thompson@example.com")
        good = await sc.new_user("frances.allen@example.com")
        await target.add_fault(400, method="POST", path_regex=USERS_PATH,
                               body={"Errors": [{"description": "attribute locale is invalid", "code": 400}]},
                               content_type="application/json", times=1)
        await okta.assign_user(sc.app_id, bad)
        records = await eventually(lambda: sc.audit(user=bad, status="dead_lettered"), 60, "dead-letter audit")
        assert "400" in records[0]["detail"] and "locale is invalid" in records[0]["detail"]
        await okta.assign_user(sc.app_id, good)
        await sc.wait_active("frances.allen@example.com")
        letters = await dead_letters(stack)
        assert len(letters) == 1
        headers, body = letters[0]
        assert "400" in headers["x-bridge-reason"] and bad.encode() in body
        assert_no_secret(stack, dumps(await sc.audit()), dumps([(h, b.decode()) for h, b in letters]))


async def test_services_killed_mid_work_lose_and_duplicate_nothing(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target)
        logins = [f"bulk{n}.user@example.com" for n in range(40)]
        ids = [await sc.new_user(login) for login in logins]
        await target.add_fault(None, method="POST", path_regex=USERS_PATH, delay_s=0.2)  # slow enough to interrupt
        for user_id in ids:
            await okta.assign_user(sc.app_id, user_id)
        await eventually(lambda: sc.audit(status="applied"), 60, "first applied changes")
        for name in ("scim_dispatcher", "translator", "queue_poller", "audit_recorder"):
            stack.processes[name].kill()
        for name in ("audit_recorder", "translator", "scim_dispatcher", "queue_poller"):
            stack.restart(name)
        for user_id in ids[:10]:
            await okta.update_profile(user_id, {"lastName": "Changed"})
        await asyncio.gather(*(sc.wait_active(login, timeout=150) for login in logins))
        async def changes_applied():
            accounts = await sc.target_users()
            return all(accounts[l][0]["name"]["familyName"] == "Changed" for l in logins[:10])
        await eventually(changes_applied, 90, "updates after the restart")
        await sc.assert_one_account_each()
        for login in logins:
            assert await sc.posts_for(login) == 1, f"{login} created more than once"


async def test_a_target_that_is_down_opens_the_circuit_its_state_is_exported_and_the_backlog_drains(stack):
    """Transient failures in a row open the app's circuit: the backlog is parked (held), one probe per interval,
    the gauge ``bridge_dispatcher_circuit_open`` shows it, and everything lands once the target is back."""
    import httpx

    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, env={
            "DISPATCHER_PROBE_INTERVAL_S": "1", "DISPATCHER_CIRCUIT_FAILURES": "3"})
        await target.add_fault(503)  # down, until cleared
        logins = [f"down{n}.user@example.com" for n in range(6)]
        for login in logins:
            await okta.assign_user(sc.app_id, await sc.new_user(login))

        async def circuit_open():
            records = await sc.audit(status="held")
            return [r for r in records if "target unreachable" in (r["detail"] or "")]
        await eventually(circuit_open, 90, "the circuit opened on a target that is down")

        async def gauge() -> str:
            async with httpx.AsyncClient() as http:
                # the METRICS_PORT the harness gave the dispatcher when it started it (a port picked here could be
                # taken by another process before the dispatcher binds it)
                text = (await http.get(stack.metrics_url("scim_dispatcher"))).text
            return next((l for l in text.splitlines() if l.startswith("bridge_dispatcher_circuit_open{")), "")
        assert (await gauge()).endswith(" 1.0"), await gauge()
        await target.clear_faults()
        for login in logins:
            await sc.wait_active(login)
        assert (await gauge()).endswith(" 0.0")
        assert not await sc.audit(status="dead_lettered")
        await sc.assert_one_account_each()
        # issue 10: the dispatcher said when the circuit opened and when it closed, once each, by the app's name;
        # each held plan was recorded when parked and when released, not at every 15 s loop of the hold queue
        output = "\n".join(p.output() for n, p in stack.processes.items() if n.startswith("scim_dispatcher"))
        assert output.count(" opened: target calls stop") == 1 and output.count(" closed after ") == 1, output[-3000:]

        async def released():
            held = [r for r in await sc.audit(status="held") if r["reason"] == "circuit_open"]
            freed = await sc.audit(status="released")
            return held and len(freed) == len(held) and (held, freed)
        held, freed = await eventually(released, 60, "every held plan recorded released once")
        assert {(r["okta_user_id"], r["app_id"]) for r in freed} == {(r["okta_user_id"], r["app_id"]) for r in held}
