"""Okta misbehaving, and the bridge's own configuration going wrong, with every service a real process.

Each test has its own stack (simulator, demo target, the four services), its own RabbitMQ vhost and MongoDB
database, and ends by checking that the demo target holds what Okta holds: exactly the assigned ACTIVE users are
active there. Waits only bound a broken run (``eventually``); nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import yaml

from demo_scim_target.admin_client import TargetAdmin
from tests.harness.devstack import SERVICES, DevStack, wait_http
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually, jira_connector
from tests.e2e.scenario import audit_records, dead_letters

pytestmark = pytest.mark.e2e

DISPATCHER_OUTCOMES = {"applied", "skipped", "skipped_stale", "dead_lettered"}


# ----------------------------------------------------------------------------------------------------------- helpers

def _profile(login: str) -> dict[str, str]:
    first, _, _ = login.partition("@")
    return {"login": login, "email": login, "firstName": first.capitalize(), "lastName": "Tester"}


async def _new_users(okta: SimulatorAdmin, *logins: str) -> dict[str, str]:
    return {login: await okta.create_user(_profile(login)) for login in logins}


async def _okta_active_usernames(stack: DevStack, app_ids: list[str]) -> set[str]:
    """What Okta holds: the app usernames of the assigned users whose Okta status is ACTIVE."""
    names: set[str] = set()
    async with httpx.AsyncClient(headers={"Authorization": f"SSWS {stack.token}"}, timeout=10.0) as http:
        for app_id in app_ids:
            url: str | None = f"{stack.okta_url}/api/v1/apps/{app_id}/users?limit=500&expand=user"
            while url:
                response = await http.get(url)
                response.raise_for_status()
                page = response.json()
                names |= {au["credentials"]["userName"].lower() for au in page
                          if au["_embedded"]["user"]["status"] == "ACTIVE"}
                url = response.links.get("next", {}).get("url") if page else None
    return names


async def _target_active_usernames(target: TargetAdmin) -> set[str]:
    return {u["userName"].lower() for u in await target.users() if u.get("active") is True}


async def assert_target_matches_okta(stack: DevStack, target: TargetAdmin, app_ids: list[str],
                                     timeout: float = 90.0) -> set[str]:
    """Waits until the active accounts in the demo target are exactly the assigned ACTIVE users in Okta."""
    last: dict[str, set[str]] = {}

    async def same() -> bool:
        last["okta"] = await _okta_active_usernames(stack, app_ids)
        last["target"] = await _target_active_usernames(target)
        return last["okta"] == last["target"]

    try:
        await eventually(same, timeout=timeout, what="demo target matching Okta")
    except AssertionError:
        raise AssertionError(f"demo target does not match Okta: okta={last.get('okta')} "
                             f"target={last.get('target')}") from None
    return last["okta"]


async def _has_active(target: TargetAdmin, *user_names: str) -> bool:
    return {n.lower() for n in user_names} <= await _target_active_usernames(target)


async def _start_bridge(stack: DevStack, okta: SimulatorAdmin, target: TargetAdmin,
                        assigned: list[str]) -> tuple[str, dict[str, str]]:
    """One app (jira, SCIM 1.1) with `assigned` users assigned before the bridge starts; waits for the first sync."""
    app_id = await okta.create_app("Jira", "jira")
    ids = await _new_users(okta, *assigned)
    for user_id in ids.values():
        await okta.assign_user(app_id, user_id)
    stack.write_connectors([jira_connector(stack, app_id)])
    stack.start_services()
    await eventually(lambda: _has_active(target, *assigned), what="initial sync")
    return app_id, ids


def _sync_records(records: list[dict], app_id: str | None = None) -> list[dict]:
    """Full syncs of the users (each start also requests a groups sync, which is not one)."""
    return [r for r in records if r["step"] == "received" and str(r.get("event_type", "")).startswith("sync:")
            and (r.get("detail") or "").startswith("full sync") and (app_id is None or r.get("app_id") == app_id)]


async def _sync_records_of(stack: DevStack, app_id: str) -> list[dict]:
    return _sync_records(await audit_records(stack, app=app_id), app_id)


def _assert_services_alive(stack: DevStack, *names: str) -> None:
    for name in names or SERVICES:
        assert stack.processes[name].alive(), f"{name} died:\n{stack.processes[name].output()[-4000:]}"


async def _dead_letters(stack: DevStack) -> list[tuple[str, bytes]]:
    """(x-bridge-reason, body) of every message in `bridge.dead-letters`; nothing is acknowledged (they stay)."""
    return [(str(headers.get("x-bridge-reason", "")), body) for headers, body in await dead_letters(stack)]


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _target(id_: str, type_: str, alternate_id: str = "unknown") -> dict[str, str]:
    return {"id": id_, "type": type_, "alternateId": alternate_id, "displayName": alternate_id}


async def _wait_exit(process, timeout: float = 60.0) -> int:
    return await asyncio.to_thread(process.proc.wait, timeout)


def _rate_limited(stats: dict) -> dict:
    return {bucket: per_token for bucket, per_token in stats["rateLimited"].items() if per_token}


# ------------------------------------------------------------------------------------------------------------- tests

async def test_malformed_and_unknown_log_events_are_dead_lettered_or_ignored(stack):
    """Events of the types the bridge asks for that cannot be read are dead-lettered alone (an event whose uuid is
    not a string once stopped the poller for good); events of other types, and anything without an ``eventType``,
    never reach it: the System Log request filters on the types it handles, as Okta applies it."""
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        app_id, ids = await _start_bridge(stack, okta, target, ["alice@example.com"])
        alice = ids["alice@example.com"]
        no_event_type, no_user_target, unknown = (str(uuid.uuid4()) for _ in range(3))
        membership = [_target("0uafake0000000000001", "AppUser", "alice@example.com"),
                      _target(app_id, "AppInstance", "Jira"), _target(alice, "User", "alice@example.com")]
        await okta.append_raw_event({"eventType": "application.user_membership.add", "published": _now_iso(),
                                     "target": membership, "displayMessage": "marker-no-uuid"})
        await okta.append_raw_event({"uuid": 12345, "eventType": "application.user_membership.add",
                                     "published": _now_iso(), "target": membership,
                                     "displayMessage": "marker-uuid-not-a-string"})
        await okta.append_raw_event({"uuid": no_event_type, "published": _now_iso(), "target": membership})
        await okta.append_raw_event({"uuid": no_user_target, "eventType": "application.user_membership.add",
                                     "published": _now_iso(), "target": membership[:2]})
        await okta.append_raw_event("marker-not-an-object")
        await okta.append_raw_event({"uuid": unknown, "eventType": "com.example.future.event_type",
                                     "published": _now_iso(), "target": [membership[2]]})
        # later valid changes still flow
        bob = (await _new_users(okta, "bob@example.com"))["bob@example.com"]
        await okta.assign_user(app_id, bob)
        await eventually(lambda: _has_active(target, "bob@example.com"), what="a valid event after malformed ones")

        async def three_dead_letters():
            letters = await _dead_letters(stack)
            return len(letters) >= 3 and letters
        letters = await eventually(three_dead_letters, what="malformed events in bridge.dead-letters")
        reasons = {body: reason for reason, body in letters}
        assert all(reasons.values()), f"a dead letter without x-bridge-reason: {letters}"
        by_marker = {marker: next((r for b, r in reasons.items() if marker.encode() in b), None)
                     for marker in (no_user_target,)}
        assert "User" in (by_marker[no_user_target] or ""), by_marker
        assert any("uuid is not a string" in r for r in reasons.values()), reasons
        assert any("uuid" in r and "not a string" not in r for r in reasons.values()), reasons  # no uuid at all
        assert len(letters) == 3, "one dead letter each, however often the poller ran"
        for outside in (no_event_type, unknown):  # the filter leaves them in Okta
            assert not any(outside.encode() in body for _, body in letters), f"{outside} reached the bridge"
        # kept without the event's display message, names or emails (issue 9: ids, type and reason only)
        for marker in (b"marker-no-uuid", b"marker-uuid-not-a-string", b"marker-not-an-object", b"alice@example.com"):
            assert not any(marker in body for _, body in letters), marker

        async def audited():
            recs = await audit_records(stack, status="dead_lettered")
            return len(recs) >= 3 and no_user_target in {r.get("event_uuid") for r in recs} and recs
        records = await eventually(audited, what="dead_lettered audit records")
        assert all(r["service"] == "queue-poller" and "malformed" in r["detail"] for r in records), records
        assert not await audit_records(stack, event=unknown), "an unknown event type was published"
        assert "malformed log event dead-lettered" in stack.processes["queue_poller"].output()

        await assert_target_matches_okta(stack, target, [app_id])
        _assert_services_alive(stack)


async def test_log_event_with_unreadable_transaction_is_dead_lettered_not_a_poison_page(stack):
    """`transaction` (or its `detail`) not an object must be dead-lettered like any malformed event; it must not
    make every poll of its page fail, which would stop the poller for good."""
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        app_id, ids = await _start_bridge(stack, okta, target, ["alice@example.com"])
        bad = str(uuid.uuid4())
        await okta.append_raw_event({"uuid": bad, "eventType": "user.account.update_profile", "published": _now_iso(),
                                     "target": [_target(ids["alice@example.com"], "User", "alice@example.com")],
                                     "transaction": {"type": "WEB", "id": "x", "detail": "not-an-object"}})
        bob = (await _new_users(okta, "bob@example.com"))["bob@example.com"]
        await okta.assign_user(app_id, bob)
        await eventually(lambda: _has_active(target, "bob@example.com"), what="a valid event after the malformed one")
        records = await eventually(lambda: audit_records(stack, event=bad, status="dead_lettered"),
                                   what="dead_lettered audit of the malformed event")
        assert records[0]["service"] == "queue-poller"
        await assert_target_matches_okta(stack, target, [app_id])
        _assert_services_alive(stack)


async def test_user_deleted_right_after_assignment_leaves_no_active_account(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        app_id, _ = await _start_bridge(stack, okta, target, ["alice@example.com"])
        # the translator lags behind: by the time it reads the user, Okta answers 404
        stack.processes["translator"].stop()
        gone = (await _new_users(okta, "gone@example.com"))["gone@example.com"]
        await okta.assign_user(app_id, gone)
        await okta.delete_user(gone)
        stack.restart("translator")

        async def planned_from_404():
            recs = await audit_records(stack, user=gone, status="planned")
            return [r for r in recs if "no longer exists" in (r.get("detail") or "")]
        plan = (await eventually(planned_from_404, what="plan for a user Okta no longer has"))[0]
        assert plan["service"] == "translator"

        async def dispatched():
            recs = await audit_records(stack, user=gone)
            return [r for r in recs if r["step"] in DISPATCHER_OUTCOMES and r.get("plan_version") is not None
                    and r["plan_version"] >= plan["plan_version"]]
        await eventually(dispatched, what="dispatcher outcome of the plan")

        assert "gone@example.com" not in await _target_active_usernames(target)
        await assert_target_matches_okta(stack, target, [app_id])
        assert _rate_limited(await okta.stats()) == {}, "a normal run was rate-limited"
        _assert_services_alive(stack)


async def test_okta_429_and_5xx_are_retried(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        app_id, ids = await _start_bridge(stack, okta, target, ["alice@example.com"])
        await okta.inject("user", 503, 1)
        # 429s that reset in a few seconds (as the concurrency limit's do; a rate-limit 429 waits for the minute's
        # end, up to 60 s each: the client's wait for the reset is unit-tested against Okta's headers)
        await okta.inject("user", 429, 1, reset_s=2)
        await okta.inject("logs", 429, 1, reset_s=2)
        await okta.inject("logs", 500, 1)
        carol = (await _new_users(okta, "carol@example.com"))["carol@example.com"]
        await okta.assign_user(app_id, carol)
        await okta.update_profile(ids["alice@example.com"], {"firstName": "Renamed"})

        async def renamed():
            alice = next((u for u in await target.users() if u["userName"].lower() == "alice@example.com"), None)
            return bool(alice) and alice["name"]["givenName"] == "Renamed"
        await eventually(lambda: _has_active(target, "carol@example.com"), timeout=180,
                         what="assignment despite faults")
        await eventually(renamed, timeout=180, what="profile update despite faults")

        async def retried_both():
            retried = [r for r in await audit_records(stack, status="retried") if r["service"] == "translator"]
            details = " | ".join(r.get("detail") or "" for r in retried)
            return "-> 503" in details and "-> 429" in details
        await eventually(retried_both, what="translator audit `retried` for the 503 and the 429")
        assert "poll failed (OktaTransientError" in stack.processes["queue_poller"].output()
        await assert_target_matches_okta(stack, target, [app_id])
        _assert_services_alive(stack)


async def test_rejected_cursor_triggers_full_sync_of_every_app(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        app_id, _ = await _start_bridge(stack, okta, target, ["alice@example.com"])
        before = (await _new_users(okta, "before@example.com"))["before@example.com"]
        await okta.assign_user(app_id, before)
        await okta.reject_cursors()

        async def sync_requested():
            return [r for r in _sync_records(await audit_records(stack, app=app_id))
                    if r["event_type"] == "sync:cursor_rejected"]
        await eventually(sync_requested, what="full sync after the rejected cursor")
        assert "Okta rejected the stored cursor" in stack.processes["queue_poller"].output()

        after = (await _new_users(okta, "after@example.com"))["after@example.com"]
        await okta.assign_user(app_id, after)
        await eventually(lambda: _has_active(target, "before@example.com", "after@example.com"),
                         what="changes made around the rejection")
        async def through_the_new_cursor():
            # planned, or superseded by the sync's plan if the translator listed the app after this assignment
            return [r for r in await audit_records(stack, user=after)
                    if r["event_type"] == "application.user_membership.add"
                    and (r["step"] == "planned" or (r.get("detail") or "").startswith("superseded"))]
        await eventually(through_the_new_cursor, what="the change after the rejection read from the log")
        await assert_target_matches_okta(stack, target, [app_id])
        _assert_services_alive(stack)


async def test_expired_cursor_triggers_full_sync(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        app_id, _ = await _start_bridge(stack, okta, target, ["alice@example.com"])
        poller = stack.processes["queue_poller"]
        poller.stop()
        late = (await _new_users(okta, "late@example.com"))["late@example.com"]
        await okta.assign_user(app_id, late)
        poller.env = {**poller.env, "POLLER_MAX_CURSOR_AGE_S": "2"}
        await asyncio.sleep(3)  # let the stored cursor grow older than POLLER_MAX_CURSOR_AGE_S
        stack.restart("queue_poller")

        await eventually(lambda: _has_active(target, "late@example.com"), what="change made while the poller was down")
        async def expired_sync():
            syncs = await _sync_records_of(stack, app_id)
            return [r for r in syncs if r["event_type"] == "sync:cursor_expired"]
        await eventually(expired_sync, what="audit `received` sync:cursor_expired")

        async def looked_at_by_sync():
            # planned by the sync, or the sync's plan superseded: the poller's fresh start re-reads the last minute of
            # the log, so the assignment's own event may take the user's version while the sync reads the user
            return [r for r in await audit_records(stack, user=late) if r["event_type"] == "sync:cursor_expired"
                    and (r["step"] == "planned" or (r.get("detail") or "").startswith("superseded"))]
        await eventually(looked_at_by_sync, what="the late assignment planned by the full sync")
        assert "cursor expired" in poller.output()
        await assert_target_matches_okta(stack, target, [app_id])
        _assert_services_alive(stack)


async def test_new_app_in_connectors_file_is_synced_alone(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        jira, _ = await _start_bridge(stack, okta, target, ["alice@example.com", "bob@example.com"])
        confluence = await okta.create_app("Confluence", "confluence")
        for user_id in (await _new_users(okta, "carol@example.com", "dave@example.com")).values():
            await okta.assign_user(confluence, user_id)

        for name in reversed(SERVICES):
            stack.processes[name].stop()
        stack.write_connectors([jira_connector(stack, jira),
                                {**jira_connector(stack, confluence, "v2"), "name": "confluence"}])
        for name in SERVICES:  # audit_recorder first, queue_poller last
            stack.restart(name)
            if name == "audit_recorder":
                await asyncio.to_thread(wait_http, f"{stack.audit_url}/healthz", 60, stack.processes[name].proc)

        await eventually(lambda: _has_active(target, "carol@example.com", "dave@example.com"),
                         what="users of the new app synced")
        confluence_syncs = await eventually(lambda: _sync_records_of(stack, confluence), what="sync:new_app audited")
        assert [r["event_type"] for r in confluence_syncs] == ["sync:new_app"], confluence_syncs
        jira_syncs = _sync_records(await audit_records(stack, app=jira))
        assert [r["event_type"] for r in jira_syncs] == ["sync:initial"], "the first app was synced again"
        await assert_target_matches_okta(stack, target, [jira, confluence])
        assert _rate_limited(await okta.stats()) == {}, "a normal run was rate-limited"
        _assert_services_alive(stack)


async def test_poller_of_another_org_refuses_the_database(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        app_id, _ = await _start_bridge(stack, okta, target, ["alice@example.com"])
        other_org = "https://other-org.okta.example"
        intruder = stack.start_service("queue_poller", "queue_poller-other-org", {"OKTA_ORG_URL": other_org})
        code = await _wait_exit(intruder)
        output = intruder.output()
        assert code != 0, output
        assert stack.okta_url in output and other_org in output, output

        bob = (await _new_users(okta, "bob@example.com"))["bob@example.com"]
        await okta.assign_user(app_id, bob)
        await eventually(lambda: _has_active(target, "bob@example.com"), what="the bridge of the real org still works")
        await assert_target_matches_okta(stack, target, [app_id])
        _assert_services_alive(stack)


async def test_wrong_connectors_file_stops_the_service_with_a_precise_message(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        app_id, _ = await _start_bridge(stack, okta, target, ["alice@example.com"])
        secrets = [stack.token, stack.target_token]
        cases = {  # the translator reads no SCIM secret (issue 9: each service holds only its own credentials)
            "base_url": ("translator", {**jira_connector(stack, app_id), "base_url": "ftp://x"}),
            "NOT_SET_JIRA_TOKEN": ("scim_dispatcher", {**jira_connector(stack, app_id),
                                                       "auth": {"type": "header", "value_env": "NOT_SET_JIRA_TOKEN"}}),
        }
        for field, (service, entry) in cases.items():
            bad = stack.workdir / f"connectors-bad-{field}.yaml"
            bad.write_text(yaml.safe_dump({"apps": [entry]}, sort_keys=False))
            env = {**stack.service_env(service), "CONNECTORS_FILE": str(bad)}
            env.pop("NOT_SET_JIRA_TOKEN", None)
            result = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", service], env=env,
                                             capture_output=True, text=True, timeout=60)
            output = result.stdout + result.stderr
            assert result.returncode != 0, output
            assert "apps[0] (jira)" in output and field in output, output
            for secret in secrets:
                assert secret not in output, f"a secret value was printed: {output}"

        await assert_target_matches_okta(stack, target, [app_id])
        _assert_services_alive(stack)


async def test_own_writes_are_ignored_but_the_same_change_by_an_admin_is_not(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        app_id, ids = await _start_bridge(stack, okta, target, ["alice@example.com"])
        alice = ids["alice@example.com"]
        async with httpx.AsyncClient(headers={"Authorization": f"SSWS {stack.token}"}, timeout=10.0) as http:
            response = await http.post(f"{stack.okta_url}/api/v1/apps/{app_id}/users/{alice}",
                                       json={"profile": {"costCenter": "by-the-bridge"}})
            response.raise_for_status()
        await okta.update_app_user_profile(app_id, alice, {"costCenter": "by-an-admin"})
        updates = [e for e in await okta.events() if isinstance(e, dict)
                   and e.get("eventType") == "application.user_membership.update"]
        own = [e["uuid"] for e in updates if e["transaction"]["detail"].get("requestApiTokenId") == stack.token_id]
        admin = [e["uuid"] for e in updates if not e["transaction"]["detail"].get("requestApiTokenId")]
        assert len(own) == 1 and len(admin) == 1, updates

        # the admin's event comes after ours in the log: once it is received, ours was read and passed over
        await eventually(lambda: audit_records(stack, event=admin[0], status="received"), what="admin's change received")
        await eventually(lambda: audit_records(stack, event=admin[0], status="planned"), what="admin's change planned")
        assert await audit_records(stack, event=own[0]) == [], "the bridge's own write was published"
        await assert_target_matches_okta(stack, target, [app_id])
        _assert_services_alive(stack)
