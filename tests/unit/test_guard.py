"""The accidental-deactivation guard: every deactivating plan counts, from events and full syncs alike; past the
threshold the app's deactivations are held (audited, not sent) while everything else flows; a release looks at each
held key again from Okta's state at that moment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from okta_bridge.contracts import AppSyncRequested, AuditStep, PlanAction, Reason, SyncReason
from okta_bridge.events import parse_event
from okta_bridge.metrics import GUARD_PAUSED
from okta_bridge.stores.guards import decide, limit_of
from tests.unit.fakes import (ORG, FakeAssignments, FakeAudit, FakeGuards, FakeOkta, FakePlanOutbox, app_connector,
                              membership_event, okta_user)
from translator.guard import DeactivationGuard
from translator.handlers import Translator
from translator.planning import Planner, Source

JIRA, WIKI = "0oa1jiraxxxxxxxxxxxx", "0oa2wikixxxxxxxxxxxx"


def uid(n: int) -> str:
    return f"00u{n:x<17}"


def make(guard: dict, **jira) -> Translator:
    apps = {JIRA: app_connector(JIRA, "jira", guard=guard, **jira), WIKI: app_connector(WIKI, "wiki")}
    store = FakeAssignments()
    guards = FakeGuards(lambda app: sum(1 for (a, _), r in store.rows.items() if a == app and r.get("assigned")))
    return Translator(ORG, apps, Planner(ORG, apps, store, FakeOkta()), FakePlanOutbox(), FakeAudit(),
                      guard=DeactivationGuard(apps, guards))


def sync(sync_id: str) -> AppSyncRequested:
    return AppSyncRequested(org=ORG, app_id=JIRA, reason=SyncReason.INITIAL, sync_id=sync_id)


def sent(t: Translator, action: PlanAction, app: str = JIRA) -> list[str]:
    return sorted(p.okta_user_id for p, _ in t.outbox.plans if p.action is action and p.app_id == app)


async def synced(t: Translator, users: int) -> None:
    for n in range(users):
        t.okta.assign(JIRA, okta_user(uid(n)))
    await t.handle_sync(sync("s1"))
    t.outbox.plans.clear()


async def look_again(t: Translator, app_id: str, user_id: str):
    """What ``bridgectl guard release`` publishes for each held key (as the dead-letter replay does)."""
    from okta_bridge.deadletters import look_again as event_of

    _, _, event = event_of(ORG, app_id, user_id)
    return await t.handle_events([(Source(user_id, event.event_type, event.event_uuid, None), event)])


async def test_a_full_sync_of_an_emptied_app_sends_deactivations_up_to_the_threshold_and_holds_the_rest():
    t = make({"max_deactivations": 3, "window_s": 3600})
    await synced(t, 10)
    t.okta.app_users[JIRA].clear()  # an emptied Okta group: the next full sync lists no one
    await t.handle_sync(sync("s2"))
    assert len(sent(t, PlanAction.DEACTIVATE)) == 3
    assert len(t.guard.store.held(JIRA)) == 7
    held = [f for s, f in t.audit.records if s is AuditStep.HELD]
    assert len(held) == 7 and all(f["reason"] is Reason.GUARD_HELD and "bridgectl guard" in f["detail"]
                                  for f in held)
    assert GUARD_PAUSED.labels("jira")._value.get() == 1


async def test_while_paused_other_apps_and_the_apps_other_changes_keep_flowing_and_its_deactivations_are_held():
    t = make({"max_deactivations": 1})
    await synced(t, 3)
    t.okta.app_users[JIRA].clear()
    await t.handle_sync(sync("s2"))  # one sent, two held: paused
    t.outbox.plans.clear()
    t.okta.assign(WIKI, okta_user(uid(7)))
    t.okta.assign(JIRA, okta_user(uid(8)))
    events = [parse_event(ORG, membership_event("w", app_id=WIKI, user_id=uid(7))),
              parse_event(ORG, membership_event("j", app_id=JIRA, user_id=uid(8))),
              parse_event(ORG, membership_event("r", "remove", app_id=WIKI, user_id=uid(7)))]
    await t.handle_events([(Source(i, e.event_type, e.event_uuid, None), e) for i, e in enumerate(events[:2])])
    assert sent(t, PlanAction.UPSERT, WIKI) == [uid(7)] and sent(t, PlanAction.UPSERT, JIRA) == [uid(8)]
    t.okta.app_users[JIRA] = [au for au in t.okta.app_users[JIRA] if au["id"] != uid(8)]
    await t.handle_events([(Source(9, "x", "rj", None),
                            parse_event(ORG, membership_event("rj", "remove", app_id=JIRA, user_id=uid(8))))])
    assert sent(t, PlanAction.DEACTIVATE, JIRA) == [] and uid(8) in t.guard.store.held(JIRA)
    await t.handle_events([(Source(10, "x", "r", None), events[2])])  # wiki's guard (default 500) is not paused
    assert sent(t, PlanAction.DEACTIVATE, WIKI) == [uid(7)]


async def test_events_count_too_and_a_suspension_that_deactivates_is_a_deactivation():
    t = make({"max_deactivations": 1}, suspended="deactivate")
    await synced(t, 3)
    for n in (0, 1):
        t.okta.update(uid(n), status="SUSPENDED")
    raws = [{"uuid": f"s{n}", "published": "2026-01-02T03:04:05.000Z", "eventType": "user.lifecycle.suspend",
             "target": [{"id": uid(n), "type": "User"}]} for n in (0, 1)]
    events = [parse_event(ORG, r) for r in raws]
    await t.handle_events([(Source(i, e.event_type, e.event_uuid, None), e) for i, e in enumerate(events)])
    assert len(sent(t, PlanAction.DEACTIVATE)) == 1 and len(t.guard.store.held(JIRA)) == 1


async def test_a_share_threshold_is_of_the_apps_assigned_users():
    t = make({"max_deactivations": "20%"})
    await synced(t, 10)
    t.okta.app_users[JIRA].clear()
    await t.handle_sync(sync("s2"))
    assert len(sent(t, PlanAction.DEACTIVATE)) == 2 and len(t.guard.store.held(JIRA)) == 8


async def test_a_release_plans_each_held_key_from_okta_now_and_never_replays_a_stale_deactivation():
    t = make({"max_deactivations": 1})
    await synced(t, 3)
    t.okta.app_users[JIRA].clear()
    await t.handle_sync(sync("s2"))
    held = t.guard.store.held(JIRA)
    assert len(held) == 2
    back, gone = held
    # assigned again in Okta meanwhile, and the bridge has not seen that event yet: the release reads Okta now
    t.okta.assign(JIRA, okta_user(back))
    t.outbox.plans.clear()
    t.guard.store.release_all(JIRA)
    for user in held:
        await look_again(t, JIRA, user)
    assert sent(t, PlanAction.DEACTIVATE) == [gone]  # released: goes out, uncounted
    assert sent(t, PlanAction.UPSERT) == [back]
    assert t.guard.store.held(JIRA) == [] and t.guard.store.windows[JIRA]["count"] == 0


async def test_a_look_again_plans_a_key_the_bridge_never_saw_from_oktas_assignment_now():
    """``bridgectl provision`` for a user whose assignment event has not arrived: the app-user read says assigned."""
    t = make({"max_deactivations": 5})
    t.okta.assign(JIRA, okta_user(uid(1)), username="ann.jira")
    await look_again(t, JIRA, uid(1))
    [(plan, _)] = t.outbox.plans
    assert plan.action is PlanAction.UPSERT and plan.unique_value == "ann.jira"


async def test_an_app_whose_guard_is_off_is_never_held():
    t = make({"max_deactivations": None})
    await synced(t, 5)
    t.okta.app_users[JIRA].clear()
    await t.handle_sync(sync("s2"))
    assert len(sent(t, PlanAction.DEACTIVATE)) == 5


def test_the_threshold_decision():
    assert decide(0, 5, 3, False).allowed == 3 and decide(0, 5, 3, False).paused
    assert decide(3, 1, 3, False).allowed == 0
    assert decide(0, 2, 3, False) == decide(0, 2, 3, False) and not decide(0, 2, 3, False).paused
    assert decide(0, 1, 3, True).allowed == 0  # paused stays paused until an operator acts
    assert limit_of("10%", 1000) == 100 and limit_of("10%", 3) == 1 and limit_of(7, 10) == 7


@pytest.mark.parametrize("bad", ["ten", "10", "150%", -1, "%"])
def test_a_bad_threshold_is_refused_when_the_connectors_file_is_read(bad):
    with pytest.raises(ValidationError, match="max_deactivations"):
        app_connector(JIRA, "jira", guard={"max_deactivations": bad})


def test_the_default_guard_is_on():
    assert app_connector(JIRA, "jira").guard.max_deactivations == 500
