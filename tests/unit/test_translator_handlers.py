"""Translator over in-memory ports: the assignment table, routing of user events, plans from state, full syncs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from okta_bridge.contracts import (AppSyncRequested, AuditStep, MappedAttribute, PlanAction, SyncReason,
                                   TargetValuesObserved)
from okta_bridge.events import parse_event
from tests.unit.fakes import (ORG, FakeAssignments, FakeAudit, FakeOkta, FakePlanOutbox, app_connector,
                              membership_event, okta_user, user_event)
from okta_bridge.okta_client import OktaTransientError
from translator.handlers import Translator
from translator.planning import Planner, Source

JIRA, WIKI = "0oa1jiraxxxxxxxxxxxx", "0oa2wikixxxxxxxxxxxx"


def make(users=None, page_size: int = 500, **jira) -> Translator:
    """``jira``: connector settings of the Jira app beside the test defaults."""
    apps = {JIRA: app_connector(JIRA, "jira", pool="fast", **jira), WIKI: app_connector(WIKI, "wiki")}
    return Translator(ORG, apps, Planner(ORG, apps, FakeAssignments(), FakeOkta(users, page_size)), FakePlanOutbox(),
                      FakeAudit())


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plans(t: Translator):
    return [p for p, _ in t.outbox.plans]


def event(raw):
    return parse_event(ORG, raw)


def attrs(plan) -> dict:
    return {a.path: a.value for a in plan.attributes}


async def test_membership_add_records_the_assignment_and_plans_an_upsert():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx", username="ann.jira")))
    row = await t.store.get(JIRA, "00u1xxxxxxxxxxxxxxxx")
    assert row.assigned and row.app_username == "ann.jira"
    [(plan, pool)] = t.outbox.plans
    assert pool == "fast"
    assert (plan.action, plan.app_id, plan.okta_user_id, plan.version) == (PlanAction.UPSERT, JIRA, "00u1xxxxxxxxxxxxxxxx", 1)
    assert plan.unique_value == "ann.jira" and attrs(plan)["userName"] == "ann.jira"
    assert plan.cause == "application.user_membership.add" and plan.event_uuid == "e1"
    assert AuditStep.PLANNED in t.audit.steps()


async def test_membership_remove_plans_a_deactivate():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    await t.handle_event(event(membership_event("e2", "remove", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert not (await t.store.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).assigned
    assert [(p.action, p.version) for p in plans(t)] == [(PlanAction.UPSERT, 1), (PlanAction.DEACTIVATE, 2)]


async def test_change_username_updates_the_table_and_the_plan():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx", username="old")))
    await t.handle_event(event(membership_event("e2", "change_username", user_id="00u1xxxxxxxxxxxxxxxx", username="new")))
    assert (await t.store.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).app_username == "new"
    assert plans(t)[-1].unique_value == "new"


async def test_membership_of_an_unconfigured_app_is_skipped():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", app_id="0oa9otherxxxxxxxxxxx", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert plans(t) == [] and t.okta.get_user_calls == []
    assert t.audit.steps() == [AuditStep.SKIPPED]


async def test_reordered_remove_then_add_converges_on_the_state_read_now():
    """The add arrives last but the user was unassigned: the plan follows the table, not the event order."""
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e2", "remove", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert plans(t)[-1].action is PlanAction.DEACTIVATE


async def test_user_event_is_routed_only_to_apps_the_user_is_assigned_to():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx"), "00u2xxxxxxxxxxxxxxxx": okta_user("00u2xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", app_id=WIKI, user_id="00u1xxxxxxxxxxxxxxxx")))
    await t.handle_event(event(membership_event("e2", app_id=JIRA, user_id="00u2xxxxxxxxxxxxxxxx")))
    t.outbox.plans.clear()
    t.okta.get_user_calls.clear()
    await t.handle_event(event(user_event("u1", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert [(p.app_id, p.okta_user_id) for p in plans(t)] == [(WIKI, "00u1xxxxxxxxxxxxxxxx")]
    assert t.outbox.plans[0][1] == "default"
    assert t.okta.get_user_calls == ["00u1xxxxxxxxxxxxxxxx"]


async def test_user_event_reads_the_user_once_for_several_apps():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", app_id=WIKI, user_id="00u1xxxxxxxxxxxxxxxx")))
    await t.handle_event(event(membership_event("e2", app_id=JIRA, user_id="00u1xxxxxxxxxxxxxxxx")))
    t.okta.get_user_calls.clear()
    await t.handle_event(event(user_event("u1", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert sorted(p.app_id for p in plans(t)[-2:]) == [JIRA, WIKI]
    assert t.okta.get_user_calls == ["00u1xxxxxxxxxxxxxxxx"]


async def test_user_event_for_an_unassigned_user_plans_nothing():
    t = make({"00u7xxxxxxxxxxxxxxxx": okta_user("00u7xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(user_event("u1", user_id="00u7xxxxxxxxxxxxxxxx")))
    assert plans(t) == [] and t.okta.get_user_calls == []
    assert t.audit.steps() == [AuditStep.SKIPPED]


async def test_suspend_event_sends_nothing_with_the_default_connector():
    """Okta's SCIM 1.1 and 2.0 pages: no deprovisioning is sent for a suspended user (``suspended: ignore``)."""
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    t.outbox.plans.clear()
    t.okta.users["00u1xxxxxxxxxxxxxxxx"] = okta_user("00u1xxxxxxxxxxxxxxxx", "SUSPENDED")
    await t.handle_event(event(user_event("u1", "lifecycle.suspend", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert plans(t) == []
    assert t.audit.steps()[-1] is AuditStep.SKIPPED


async def test_suspend_event_deactivates_with_suspended_deactivate():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")}, suspended="deactivate")
    await t.handle_event(event(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    t.okta.users["00u1xxxxxxxxxxxxxxxx"] = okta_user("00u1xxxxxxxxxxxxxxxx", "SUSPENDED")
    await t.handle_event(event(user_event("u1", "lifecycle.suspend", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert plans(t)[-1].action is PlanAction.DEACTIVATE


async def test_a_user_gone_from_okta_is_deactivated():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx", username="ann.jira")))
    del t.okta.users["00u1xxxxxxxxxxxxxxxx"]  # 404 from now on
    await t.handle_event(event(user_event("u1", "lifecycle.delete.initiated", user_id="00u1xxxxxxxxxxxxxxxx")))
    plan = plans(t)[-1]
    assert plan.action is PlanAction.DEACTIVATE
    assert plan.unique_value == "ann.jira"  # still something to look the account up by


async def test_pending_user_sends_nothing_and_audits_a_skip():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx", "STAGED")})
    await t.handle_event(event(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert plans(t) == []
    assert t.audit.steps() == [AuditStep.SKIPPED]


async def test_versions_grow_per_key():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx"), "00u2xxxxxxxxxxxxxxxx": okta_user("00u2xxxxxxxxxxxxxxxx")})
    for uuid in ("a", "b", "c"):
        await t.handle_event(event(membership_event(uuid, user_id="00u1xxxxxxxxxxxxxxxx")))
    await t.handle_event(event(membership_event("d", user_id="00u2xxxxxxxxxxxxxxxx")))
    await t.handle_event(event(membership_event("e", app_id=WIKI, user_id="00u1xxxxxxxxxxxxxxxx")))
    assert [(p.app_id, p.okta_user_id, p.version) for p in plans(t)] == [
        (JIRA, "00u1xxxxxxxxxxxxxxxx", 1), (JIRA, "00u1xxxxxxxxxxxxxxxx", 2), (JIRA, "00u1xxxxxxxxxxxxxxxx", 3), (JIRA, "00u2xxxxxxxxxxxxxxxx", 1), (WIKI, "00u1xxxxxxxxxxxxxxxx", 1)]


# ------------------------------------------------------------------ full sync


def sync(app_id: str = JIRA, sync_id: str = "s1") -> AppSyncRequested:
    return AppSyncRequested(org=ORG, app_id=app_id, reason=SyncReason.INITIAL, sync_id=sync_id)


async def test_sync_plans_every_listed_user_from_the_embedded_user_without_reading_users():
    t = make(page_size=2)
    for n in range(5):
        t.okta.assign(JIRA, okta_user(f"00u{n:x<17}"), username=f"user{n}.jira")
    assert await t.handle_sync(sync()) == 5
    assert t.okta.listing_calls == 3
    assert t.okta.get_user_calls == []
    assert [(p.okta_user_id, p.action, p.unique_value) for p in plans(t)] == [
        (f"00u{n:x<17}", PlanAction.UPSERT, f"user{n}.jira") for n in range(5)]
    assert all(p.cause == "sync:initial" for p in plans(t))
    assert (await t.store.get(JIRA, "00u3xxxxxxxxxxxxxxxx")).assigned


async def test_sync_maps_app_profile_attributes_from_the_listing():
    """``appProfile.<field>`` is a documented mapping source; the listing carries each app user's profile."""
    t = make()
    t.apps[JIRA] = app_connector(JIRA, "jira", attribute_mappings={"title": "appProfile.title"})
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx"), app_profile={"title": "Engineer"})
    await t.handle_sync(sync())
    assert attrs(plans(t)[0])["title"] == "Engineer"


async def test_sync_uses_the_embedded_status():
    t = make()
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx", "DEPROVISIONED"))
    await t.handle_sync(sync())
    assert plans(t)[0].action is PlanAction.DEACTIVATE


async def test_users_missing_from_the_listing_are_deactivated():
    t = make({"00u9xxxxxxxxxxxxxxxx": okta_user("00u9xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", user_id="00u9xxxxxxxxxxxxxxxx", username="gone.jira")))
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx"))
    t.outbox.plans.clear()
    assert await t.handle_sync(sync()) == 2
    by_user = {p.okta_user_id: p for p in plans(t)}
    assert by_user["00u1xxxxxxxxxxxxxxxx"].action is PlanAction.UPSERT
    assert by_user["00u9xxxxxxxxxxxxxxxx"].action is PlanAction.DEACTIVATE
    assert by_user["00u9xxxxxxxxxxxxxxxx"].unique_value == "gone.jira"
    assert not (await t.store.get(JIRA, "00u9xxxxxxxxxxxxxxxx")).assigned


async def test_a_second_sync_leaves_other_apps_alone():
    t = make({"00u9xxxxxxxxxxxxxxxx": okta_user("00u9xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", app_id=WIKI, user_id="00u9xxxxxxxxxxxxxxxx")))
    t.outbox.plans.clear()
    await t.handle_sync(sync(JIRA))
    assert plans(t) == []
    assert (await t.store.get(WIKI, "00u9xxxxxxxxxxxxxxxx")).assigned


async def test_sync_of_an_empty_app_plans_nothing():
    t = make()
    assert await t.handle_sync(sync()) == 0
    assert plans(t) == []


async def test_sync_of_an_unconfigured_app_is_skipped():
    t = make()
    assert await t.handle_sync(sync("0oa9otherxxxxxxxxxxx")) == 0
    assert t.audit.steps() == [AuditStep.SKIPPED]


async def test_sync_versions_follow_event_versions():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx"))
    await t.handle_sync(sync())
    assert [p.version for p in plans(t)] == [1, 2]


# ------------------------------------------------------------------ plans read Okta in the order of their versions


def titles(t: Translator, user_id: str) -> list[tuple[int, str]]:
    return [(p.version, attrs(p).get("title")) for p in plans(t) if p.okta_user_id == user_id]


async def test_a_page_read_before_a_change_that_was_planned_since_is_not_trusted():
    """The race the fault suite found: a listing read, then a change planned from a fresher read (its lastUpdated
    recorded), then the sync plans from its page. Its lastUpdated is older: the sync reads the user again."""
    t = make()
    t.apps[JIRA] = app_connector(JIRA, "jira", attribute_mappings={"title": "profile.title"})
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx", title="000000"), username="ann.jira")
    t.okta.assign(JIRA, okta_user("00u2xxxxxxxxxxxxxxxx", title="000000"), username="bob.jira")
    await t.handle_event(event(membership_event("e0", user_id="00u1xxxxxxxxxxxxxxxx", username="ann.jira")))

    async def change_after_the_page_was_read():
        t.okta.update("00u1xxxxxxxxxxxxxxxx", title="000001")
        await t.handle_event(event(user_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))

    t.okta.after_page = change_after_the_page_was_read
    t.okta.get_user_calls.clear()
    t.okta.listing_reads.clear()
    assert await t.handle_sync(sync()) == 2
    assert titles(t, "00u1xxxxxxxxxxxxxxxx") == [(1, "000000"), (2, "000001"), (3, "000001")]
    assert t.okta.get_user_calls == ["00u1xxxxxxxxxxxxxxxx"]  # the user event reads by id
    assert t.okta.listing_reads == [["00u1xxxxxxxxxxxxxxxx"]]  # the sync reads 00u1xxxxxxxxxxxxxxxx again (batched); 00u2xxxxxxxxxxxxxxxx from its page
    assert titles(t, "00u2xxxxxxxxxxxxxxxx") == [(1, "000000")]


async def test_a_sync_plans_from_its_page_when_the_page_is_as_new_as_every_earlier_plans_read():
    t = make()
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx"), username="ann.jira")
    await t.handle_sync(sync(sync_id="s1"))
    await t.handle_event(event(user_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))  # a plan that read the same lastUpdated by id
    await t.handle_sync(sync(sync_id="s2"))
    assert t.okta.get_user_calls == ["00u1xxxxxxxxxxxxxxxx"] and t.okta.listing_reads == []
    assert [p.version for p in plans(t)] == [1, 2, 3]


async def test_a_plan_whose_key_was_planned_meanwhile_reads_its_row_again_and_never_goes_back():
    """Two events of one user at once: the first reads slowly; the second reads, commits and goes out first. The
    first then finds the row changed, reads it again, and goes out with the next version and its newer data."""
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx", title="old")})
    t.apps[JIRA] = app_connector(JIRA, "jira", attribute_mappings={"title": "profile.title"})
    await t.handle_event(event(membership_event("e0", user_id="00u1xxxxxxxxxxxxxxxx")))
    t.outbox.plans.clear()

    async def a_second_event_overtakes(_user_id):
        await t.handle_event(event(user_event("e2", user_id="00u1xxxxxxxxxxxxxxxx")))
        t.okta.update("00u1xxxxxxxxxxxxxxxx", title="new")  # changed after the second read, before the first's

    t.okta.on_get_user = a_second_event_overtakes
    result = await t.handle_event(event(user_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert result.failure is None
    assert titles(t, "00u1xxxxxxxxxxxxxxxx") == [(2, "old"), (3, "new")]


async def test_a_read_by_id_older_than_what_an_earlier_plan_used_is_planned_again_not_published():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx", title="1", updated="2026-01-03T00:00:00.000Z")})
    await t.handle_event(event(membership_event("e0", user_id="00u1xxxxxxxxxxxxxxxx")))
    t.okta.users["00u1xxxxxxxxxxxxxxxx"] = okta_user("00u1xxxxxxxxxxxxxxxx", title="0", updated="2026-01-01T00:00:00.000Z")  # a late answer
    t.outbox.plans.clear()
    result = await t.handle_event(event(user_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert isinstance(result.failure, OktaTransientError) and "older data" in str(result.failure)
    assert plans(t) == []


async def test_a_user_event_plans_all_the_users_apps_from_one_read():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    for app_id in (JIRA, WIKI):
        await t.handle_event(event(membership_event(f"m-{app_id}", app_id=app_id, user_id="00u1xxxxxxxxxxxxxxxx")))
    t.outbox.plans.clear()
    await t.handle_event(event(user_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert sorted((p.app_id, p.version) for p in plans(t)) == [(JIRA, 2), (WIKI, 2)]
    assert t.okta.get_user_calls == ["00u1xxxxxxxxxxxxxxxx"]  # one read by id for the user event, not one per app


async def test_a_syncs_plan_whose_key_was_planned_meanwhile_reads_again_and_goes_out_after_it():
    t = make()
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx"), username="ann.jira")
    await t.handle_event(event(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx", username="ann.jira")))
    t.outbox.plans.clear()

    async def an_event_while_the_sync_plans():
        await t.handle_event(event(user_event("e2", user_id="00u1xxxxxxxxxxxxxxxx")))

    t.store.between_read_and_commit = an_event_while_the_sync_plans
    await t.handle_sync(sync())
    assert [(p.version, p.cause) for p in plans(t)] == [(2, "user.account.update_profile"), (3, "sync:initial")]


async def test_a_listed_user_without_the_embedded_user_is_read():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx", "SUSPENDED")}, suspended="deactivate")
    t.okta.app_users[JIRA].append({"id": "00u1xxxxxxxxxxxxxxxx", "scope": "USER", "status": "ACTIVE",
                                   "credentials": {"userName": "ann.jira"}, "profile": {}})
    await t.handle_sync(sync())
    assert t.okta.listing_reads == [["00u1xxxxxxxxxxxxxxxx"]]
    assert plans(t)[0].action is PlanAction.DEACTIVATE  # from the read user's status, not a missing one


# ------------------------------------------------------------------ a listing never overrides a newer membership event


def membership_at(uuid: str, kind: str, published: str, user_id: str = "00u1xxxxxxxxxxxxxxxx", username: str = "ann.jira") -> dict:
    raw = membership_event(uuid, kind, user_id=user_id, username=username)
    raw["published"] = published
    return raw


async def test_a_removal_published_after_the_listing_was_asked_for_stands():
    t = make()
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx"), username="ann.jira")
    t.okta.now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)

    async def removed_after_the_page_was_read():
        await t.handle_event(event(membership_at("e1", "remove", "2026-11-01T12:00:01.000Z")))

    t.okta.after_page = removed_after_the_page_was_read
    await t.handle_sync(sync())
    assert not (await t.store.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).assigned
    assert plans(t)[-1].action is PlanAction.DEACTIVATE


async def test_a_listing_overrides_a_membership_event_published_before_it():
    t = make()
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx"), username="ann.jira")
    await t.handle_event(event(membership_at("e1", "remove", "2026-11-01T11:00:00.000Z")))  # missed re-add since
    t.okta.now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    await t.handle_sync(sync())
    assert (await t.store.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).assigned
    assert plans(t)[-1].action is PlanAction.UPSERT


async def test_a_user_assigned_while_the_sync_runs_is_not_unassigned_by_it():
    t = make({"00u7xxxxxxxxxxxxxxxx": okta_user("00u7xxxxxxxxxxxxxxxx")})
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx"), username="ann.jira")
    t.okta.now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)

    async def assigned_after_the_page_was_read():
        await t.handle_event(event(membership_at("e7", "add", "2026-11-01T12:00:01.000Z", user_id="00u7xxxxxxxxxxxxxxxx")))

    t.okta.after_page = assigned_after_the_page_was_read
    assert await t.handle_sync(sync()) == 1
    assert (await t.store.get(JIRA, "00u7xxxxxxxxxxxxxxxx")).assigned
    assert [p.action for p in plans(t) if p.okta_user_id == "00u7xxxxxxxxxxxxxxxx"] == [PlanAction.UPSERT]


async def test_a_sync_unassigns_only_rows_assigned_as_of_before_its_first_page():
    t = make({"00u7xxxxxxxxxxxxxxxx": okta_user("00u7xxxxxxxxxxxxxxxx")}, page_size=1)
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx"), username="ann.jira")
    t.okta.assign(JIRA, okta_user("00u2xxxxxxxxxxxxxxxx"), username="bob.jira")
    t.okta.now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)

    async def assigned_between_the_pages():
        t.okta.now = datetime(2026, 11, 1, 12, 0, 10, tzinfo=UTC)
        await t.handle_event(event(membership_at("e7", "add", "2026-11-01T12:00:05.000Z", user_id="00u7xxxxxxxxxxxxxxxx")))

    t.okta.after_page = assigned_between_the_pages
    assert await t.handle_sync(sync()) == 2
    assert (await t.store.get(JIRA, "00u7xxxxxxxxxxxxxxxx")).assigned


async def test_a_rename_published_after_the_listing_was_asked_for_stands():
    t = make()
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx"), username="ann")
    await t.handle_event(event(membership_at("e0", "add", "2026-11-01T11:00:00.000Z", username="ann")))
    t.okta.now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)

    async def renamed_after_the_page_was_read():
        await t.handle_event(event(membership_at("e1", "change_username", "2026-11-01T12:00:01.000Z",
                                                 username="ann2")))

    t.okta.after_page = renamed_after_the_page_was_read
    await t.handle_sync(sync())
    assert (await t.store.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).app_username == "ann2"
    assert [p.unique_value for p in plans(t)] == ["ann", "ann2", "ann2"]


async def test_renames_processed_out_of_order_end_at_the_newest():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_at("e2", "change_username", "2026-11-01T12:00:02.000Z", username="new")))
    await t.handle_event(event(membership_at("e1", "change_username", "2026-11-01T12:00:01.000Z", username="mid")))
    assert (await t.store.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).app_username == "new"


async def test_before_okta_answered_once_the_pages_own_date_bounds_the_listings_time():
    """A fresh translator knows Okta's clock only from the local one, here a minute ahead: the page's Date (the
    answer's) puts the listing back where it was, so a removal published just after it still stands."""
    t = make()
    t.okta.assign(JIRA, okta_user("00u1xxxxxxxxxxxxxxxx"), username="ann.jira")
    t.okta.now = datetime(2026, 11, 1, 12, 1, 0, tzinfo=UTC)  # the local clock, before any answer

    async def the_answer_sets_the_clock_and_a_removal_follows():
        t.okta.now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
        await t.handle_event(event(membership_at("e1", "remove", "2026-11-01T12:00:01.000Z")))

    t.okta.after_page = the_answer_sets_the_clock_and_a_removal_follows
    await t.handle_sync(sync())
    assert not (await t.store.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).assigned


# ------------------------------------------------------------------ events beyond the brief's list (issue 9, item 6)


async def test_restore_looks_at_the_key_again_and_changes_no_assignment():
    """When Okta writes ``application.user_membership.restore`` is not documented: the key is planned again from
    what is known; an unassigned user is not assigned by it, an assigned one is updated."""
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx"), "00u2xxxxxxxxxxxxxxxx": okta_user("00u2xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx", username="ann.jira")))
    await t.handle_event(event(membership_event("e2", "remove", user_id="00u2xxxxxxxxxxxxxxxx")))
    await t.handle_event(event(membership_event("r1", "restore", user_id="00u1xxxxxxxxxxxxxxxx", username="other")))
    await t.handle_event(event(membership_event("r2", "restore", user_id="00u2xxxxxxxxxxxxxxxx")))
    assert [(p.okta_user_id, p.action, p.cause) for p in plans(t)[-2:]] == [
        ("00u1xxxxxxxxxxxxxxxx", PlanAction.UPSERT, "application.user_membership.restore"),
        ("00u2xxxxxxxxxxxxxxxx", PlanAction.DEACTIVATE, "application.user_membership.restore")]
    assert (await t.store.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).app_username == "ann.jira"
    assert not (await t.store.get(JIRA, "00u2xxxxxxxxxxxxxxxx")).assigned


async def test_primary_email_change_reads_the_user_by_id_and_plans_the_new_email():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await t.handle_event(event(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    t.okta.users["00u1xxxxxxxxxxxxxxxx"] = okta_user("00u1xxxxxxxxxxxxxxxx", updated="2026-01-02T00:00:00.000Z", email="ann.new@acme.com")
    t.okta.get_user_calls.clear()
    await t.handle_event(event(user_event("p1", "account.update_primary_email", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert t.okta.get_user_calls == ["00u1xxxxxxxxxxxxxxxx"]
    assert attrs(plans(t)[-1])["emails"][0]["value"] == "ann.new@acme.com"


# ------------------------------------------------------------------ appProfile.* values survive event-driven plans


class FakeWritebacks:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], dict] = {}

    async def changed(self, app_id: str, user_id: str, values: dict) -> dict:
        last = self.values.get((app_id, user_id), {})
        return {k: v for k, v in values.items() if last.get(k) != v}

    async def remember(self, app_id: str, user_id: str, values: dict) -> None:
        self.values.setdefault((app_id, user_id), {}).update(values)


def make_with_app_profile(users=None) -> Translator:
    return make(users, attribute_mappings={"title": "appProfile.title"})


async def synced_with_app_profile(t: Translator, title: str = "Lead") -> None:
    t.okta.assign(JIRA, t.okta.users["00u1xxxxxxxxxxxxxxxx"], "ann.jira", app_profile={"title": title})
    await t.handle_sync(sync())
    assert attrs(plans(t)[-1])["title"] == title
    t.outbox.plans.clear()


async def test_an_event_driven_plan_carries_the_app_profile_values_known_from_the_listing():
    """Before: only listings carried appProfile.*, so an event's PUT cleared them until the next sync."""
    t = make_with_app_profile({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await synced_with_app_profile(t)
    t.okta.update("00u1xxxxxxxxxxxxxxxx", firstName="Annie")
    await t.handle_event(event(user_event("u1", user_id="00u1xxxxxxxxxxxxxxxx")))
    await t.handle_event(event(membership_event("e1", "change_username", user_id="00u1xxxxxxxxxxxxxxxx", username="ann2")))
    assert [attrs(p)["title"] for p in plans(t)] == ["Lead", "Lead"]
    assert attrs(plans(t)[0])["name.givenName"] == "Annie"
    assert t.okta.app_user_reads == []  # no other event reads the app user


@pytest.mark.parametrize("event_type", ["application.user_membership.update", "directory.app_user_profile.update"])
async def test_an_app_user_profile_event_reads_the_app_user_once_and_the_new_values_stay(event_type):
    t = make_with_app_profile({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await synced_with_app_profile(t)
    t.okta.set_app_profile(JIRA, "00u1xxxxxxxxxxxxxxxx", title="Head")
    raw = membership_event("e1", "update", user_id="00u1xxxxxxxxxxxxxxxx", username="ann.jira")
    raw["eventType"] = event_type
    await t.handle_event(event(raw))
    assert t.okta.app_user_reads == [(JIRA, "00u1xxxxxxxxxxxxxxxx")]
    assert attrs(plans(t)[-1])["title"] == "Head"
    await t.handle_event(event(user_event("u1", user_id="00u1xxxxxxxxxxxxxxxx")))  # a later event-driven plan keeps the new value
    assert attrs(plans(t)[-1])["title"] == "Head" and t.okta.app_user_reads == [(JIRA, "00u1xxxxxxxxxxxxxxxx")]


async def test_app_user_profile_events_of_one_key_in_a_batch_read_the_app_user_once():
    t = make_with_app_profile({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await synced_with_app_profile(t)
    sources = [(Source(f"d{i}", "application.user_membership.update", f"e{i}"),
                event(membership_event(f"e{i}", "update", user_id="00u1xxxxxxxxxxxxxxxx"))) for i in range(3)]
    await t.handle_events(sources)
    assert t.okta.app_user_reads == [(JIRA, "00u1xxxxxxxxxxxxxxxx")] and len(plans(t)) == 1


async def test_an_app_without_app_profile_mappings_never_reads_the_app_user():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    t.okta.assign(JIRA, t.okta.users["00u1xxxxxxxxxxxxxxxx"], "ann.jira", app_profile={"title": "Lead"})
    await t.handle_sync(sync())
    await t.handle_event(event(membership_event("e1", "update", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert t.okta.app_user_reads == [] and plans(t)[-1].cause == "application.user_membership.update"


async def test_a_failed_app_user_read_plans_nothing_and_the_message_is_tried_again():
    t = make_with_app_profile({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await synced_with_app_profile(t)
    t.okta.app_user_error = OktaTransientError("okta GET /api/v1/apps/{id}/users/{id} -> 503")
    result = await t.handle_event(event(membership_event("e1", "update", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert isinstance(result.failure, OktaTransientError) and plans(t) == []


async def test_an_app_user_read_answered_without_a_profile_changes_nothing_and_is_tried_again():
    t = make_with_app_profile({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await synced_with_app_profile(t)
    t.okta.app_users[JIRA][0].pop("profile")
    result = await t.handle_event(event(membership_event("e1", "update", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert isinstance(result.failure, OktaTransientError) and plans(t) == []
    assert (await t.store.read_rows([(JIRA, "00u1xxxxxxxxxxxxxxxx")]))[(JIRA, "00u1xxxxxxxxxxxxxxxx")].app_profile == {"title": "Lead"}


async def test_an_app_user_gone_keeps_the_known_values():
    t = make_with_app_profile({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    await synced_with_app_profile(t)
    t.okta.app_users[JIRA].clear()  # unassigned in Okta; its .remove event is on its way
    await t.handle_event(event(membership_event("e1", "update", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert attrs(plans(t)[-1])["title"] == "Lead"


async def test_a_write_back_becomes_the_known_app_profile_value():
    """The log events of the bridge's own write are not read back: without this, the next plan would send the old
    value and undo the target's change."""
    t = make_with_app_profile({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    t.apps[JIRA] = app_connector(JIRA, "jira", pool="fast", accept_user_updates=True,
                                 attribute_mappings={"title": "appProfile.title"})
    t.planner.apps[JIRA] = t.apps[JIRA]
    t.writebacks = FakeWritebacks()
    await synced_with_app_profile(t)
    await t.handle_writeback(TargetValuesObserved(org=ORG, app_id=JIRA, okta_user_id="00u1xxxxxxxxxxxxxxxx",
                                                  values=(MappedAttribute(path="title", value="Boss"),)))
    await t.handle_event(event(user_event("u1", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert attrs(plans(t)[-1])["title"] == "Boss"
