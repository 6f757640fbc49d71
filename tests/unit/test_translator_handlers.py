"""Translator over in-memory ports: the assignment table, routing of user events, plans from state, full syncs."""

from __future__ import annotations

from okta_bridge.contracts import AppSyncRequested, AuditStep, PlanAction, SyncReason
from okta_bridge.events import parse_event
from tests.unit.fakes import (ORG, FakeAssignments, FakeAudit, FakeOkta, FakePlanOutbox, app_connector,
                              membership_event, okta_user, user_event)
from translator.handlers import Translator

JIRA, WIKI = "0oa1jira", "0oa2wiki"


def make(users=None, page_size: int = 500) -> Translator:
    apps = {JIRA: app_connector(JIRA, "jira", pool="fast"), WIKI: app_connector(WIKI, "wiki")}
    return Translator(ORG, apps, FakeAssignments(), FakeOkta(users, page_size), FakePlanOutbox(), FakeAudit())


def plans(t: Translator):
    return [p for p, _ in t.outbox.plans]


def event(raw):
    return parse_event(ORG, raw)


def attrs(plan) -> dict:
    return {a.path: a.value for a in plan.attributes}


async def test_membership_add_records_the_assignment_and_plans_an_upsert():
    t = make({"00u1": okta_user("00u1")})
    await t.handle_event(event(membership_event("e1", user_id="00u1", username="ann.jira")))
    row = await t.store.get(JIRA, "00u1")
    assert row.assigned and row.app_username == "ann.jira"
    [(plan, pool)] = t.outbox.plans
    assert pool == "fast"
    assert (plan.action, plan.app_id, plan.okta_user_id, plan.version) == (PlanAction.UPSERT, JIRA, "00u1", 1)
    assert plan.unique_value == "ann.jira" and attrs(plan)["userName"] == "ann.jira"
    assert plan.cause == "application.user_membership.add" and plan.event_uuid == "e1"
    assert AuditStep.PLANNED in t.audit.steps()


async def test_membership_remove_plans_a_deactivate():
    t = make({"00u1": okta_user("00u1")})
    await t.handle_event(event(membership_event("e1", user_id="00u1")))
    await t.handle_event(event(membership_event("e2", "remove", user_id="00u1")))
    assert not (await t.store.get(JIRA, "00u1")).assigned
    assert [(p.action, p.version) for p in plans(t)] == [(PlanAction.UPSERT, 1), (PlanAction.DEACTIVATE, 2)]


async def test_change_username_updates_the_table_and_the_plan():
    t = make({"00u1": okta_user("00u1")})
    await t.handle_event(event(membership_event("e1", user_id="00u1", username="old")))
    await t.handle_event(event(membership_event("e2", "change_username", user_id="00u1", username="new")))
    assert (await t.store.get(JIRA, "00u1")).app_username == "new"
    assert plans(t)[-1].unique_value == "new"


async def test_membership_of_an_unconfigured_app_is_skipped():
    t = make({"00u1": okta_user("00u1")})
    await t.handle_event(event(membership_event("e1", app_id="0oa9other", user_id="00u1")))
    assert plans(t) == [] and t.okta.get_user_calls == []
    assert t.audit.steps() == [AuditStep.SKIPPED]


async def test_reordered_remove_then_add_converges_on_the_state_read_now():
    """The add arrives last but the user was unassigned: the plan follows the table, not the event order."""
    t = make({"00u1": okta_user("00u1")})
    await t.handle_event(event(membership_event("e2", "remove", user_id="00u1")))
    assert plans(t)[-1].action is PlanAction.DEACTIVATE


async def test_user_event_is_routed_only_to_apps_the_user_is_assigned_to():
    t = make({"00u1": okta_user("00u1"), "00u2": okta_user("00u2")})
    await t.handle_event(event(membership_event("e1", app_id=WIKI, user_id="00u1")))
    await t.handle_event(event(membership_event("e2", app_id=JIRA, user_id="00u2")))
    t.outbox.plans.clear()
    t.okta.get_user_calls.clear()
    await t.handle_event(event(user_event("u1", user_id="00u1")))
    assert [(p.app_id, p.okta_user_id) for p in plans(t)] == [(WIKI, "00u1")]
    assert t.outbox.plans[0][1] == "default"
    assert t.okta.get_user_calls == ["00u1"]


async def test_user_event_reads_the_user_once_for_several_apps():
    t = make({"00u1": okta_user("00u1")})
    await t.handle_event(event(membership_event("e1", app_id=WIKI, user_id="00u1")))
    await t.handle_event(event(membership_event("e2", app_id=JIRA, user_id="00u1")))
    t.okta.get_user_calls.clear()
    await t.handle_event(event(user_event("u1", user_id="00u1")))
    assert sorted(p.app_id for p in plans(t)[-2:]) == [JIRA, WIKI]
    assert t.okta.get_user_calls == ["00u1"]


async def test_user_event_for_an_unassigned_user_plans_nothing():
    t = make({"00u7": okta_user("00u7")})
    await t.handle_event(event(user_event("u1", user_id="00u7")))
    assert plans(t) == [] and t.okta.get_user_calls == []
    assert t.audit.steps() == [AuditStep.SKIPPED]


async def test_suspend_event_deactivates_with_the_default_connector():
    t = make({"00u1": okta_user("00u1")})
    await t.handle_event(event(membership_event("e1", user_id="00u1")))
    t.okta.users["00u1"] = okta_user("00u1", "SUSPENDED")
    await t.handle_event(event(user_event("u1", "lifecycle.suspend", user_id="00u1")))
    assert plans(t)[-1].action is PlanAction.DEACTIVATE


async def test_a_user_gone_from_okta_is_deactivated():
    t = make({"00u1": okta_user("00u1")})
    await t.handle_event(event(membership_event("e1", user_id="00u1", username="ann.jira")))
    del t.okta.users["00u1"]  # 404 from now on
    await t.handle_event(event(user_event("u1", "lifecycle.delete.initiated", user_id="00u1")))
    plan = plans(t)[-1]
    assert plan.action is PlanAction.DEACTIVATE
    assert plan.unique_value == "ann.jira"  # still something to look the account up by


async def test_pending_user_sends_nothing_and_audits_a_skip():
    t = make({"00u1": okta_user("00u1", "STAGED")})
    await t.handle_event(event(membership_event("e1", user_id="00u1")))
    assert plans(t) == []
    assert t.audit.steps() == [AuditStep.SKIPPED]


async def test_versions_grow_per_key():
    t = make({"00u1": okta_user("00u1"), "00u2": okta_user("00u2")})
    for uuid in ("a", "b", "c"):
        await t.handle_event(event(membership_event(uuid, user_id="00u1")))
    await t.handle_event(event(membership_event("d", user_id="00u2")))
    await t.handle_event(event(membership_event("e", app_id=WIKI, user_id="00u1")))
    assert [(p.app_id, p.okta_user_id, p.version) for p in plans(t)] == [
        (JIRA, "00u1", 1), (JIRA, "00u1", 2), (JIRA, "00u1", 3), (JIRA, "00u2", 1), (WIKI, "00u1", 1)]


# ------------------------------------------------------------------ full sync


def sync(app_id: str = JIRA, sync_id: str = "s1") -> AppSyncRequested:
    return AppSyncRequested(org=ORG, app_id=app_id, reason=SyncReason.INITIAL, sync_id=sync_id)


async def test_sync_plans_every_listed_user_from_the_embedded_user_without_reading_users():
    t = make(page_size=2)
    for n in range(5):
        t.okta.assign(JIRA, okta_user(f"00u{n}"), username=f"user{n}.jira")
    assert await t.handle_sync(sync()) == 5
    assert t.okta.listing_calls == 3
    assert t.okta.get_user_calls == []
    assert [(p.okta_user_id, p.action, p.unique_value) for p in plans(t)] == [
        (f"00u{n}", PlanAction.UPSERT, f"user{n}.jira") for n in range(5)]
    assert all(p.cause == "sync:initial" for p in plans(t))
    assert (await t.store.get(JIRA, "00u3")).assigned


async def test_sync_maps_app_profile_attributes_from_the_listing():
    """``appProfile.<field>`` is a documented mapping source; the listing carries each app user's profile."""
    t = make()
    t.apps[JIRA] = app_connector(JIRA, "jira", attribute_mappings={"title": "appProfile.title"})
    t.okta.assign(JIRA, okta_user("00u1"), app_profile={"title": "Engineer"})
    await t.handle_sync(sync())
    assert attrs(plans(t)[0])["title"] == "Engineer"


async def test_sync_uses_the_embedded_status():
    t = make()
    t.okta.assign(JIRA, okta_user("00u1", "DEPROVISIONED"))
    await t.handle_sync(sync())
    assert plans(t)[0].action is PlanAction.DEACTIVATE


async def test_users_missing_from_the_listing_are_deactivated():
    t = make({"00u9": okta_user("00u9")})
    await t.handle_event(event(membership_event("e1", user_id="00u9", username="gone.jira")))
    t.okta.assign(JIRA, okta_user("00u1"))
    t.outbox.plans.clear()
    assert await t.handle_sync(sync()) == 2
    by_user = {p.okta_user_id: p for p in plans(t)}
    assert by_user["00u1"].action is PlanAction.UPSERT
    assert by_user["00u9"].action is PlanAction.DEACTIVATE
    assert by_user["00u9"].unique_value == "gone.jira"
    assert not (await t.store.get(JIRA, "00u9")).assigned


async def test_a_second_sync_leaves_other_apps_alone():
    t = make({"00u9": okta_user("00u9")})
    await t.handle_event(event(membership_event("e1", app_id=WIKI, user_id="00u9")))
    t.outbox.plans.clear()
    await t.handle_sync(sync(JIRA))
    assert plans(t) == []
    assert (await t.store.get(WIKI, "00u9")).assigned


async def test_sync_of_an_empty_app_plans_nothing():
    t = make()
    assert await t.handle_sync(sync()) == 0
    assert plans(t) == []


async def test_sync_of_an_unconfigured_app_is_skipped():
    t = make()
    assert await t.handle_sync(sync("0oa9other")) == 0
    assert t.audit.steps() == [AuditStep.SKIPPED]


async def test_sync_versions_follow_event_versions():
    t = make({"00u1": okta_user("00u1")})
    await t.handle_event(event(membership_event("e1", user_id="00u1")))
    t.okta.assign(JIRA, okta_user("00u1"))
    await t.handle_sync(sync())
    assert [p.version for p in plans(t)] == [1, 2]
