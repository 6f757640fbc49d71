"""GroupPlanner over in-memory ports: push_groups resolution (ids, exact names, ambiguity), unlinks, membership
facts stamped with Okta time, and the group events (profile update, delete, create)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Iterable

import pytest

from okta_bridge.contracts import (AppSyncRequested, AuditStep, EventTarget, GroupAction, GroupPlanned,
                                   MembershipPlanned, OktaEventReceived, Reason, SyncReason)
from okta_bridge.outcomes import Done, Failure, failure_of
from okta_bridge.stores.groups import micros
from okta_bridge.okta_client import OktaNotFoundError
from tests.unit.fakes import ORG, app_connector, audit_record
from translator.groups import GroupPlanner, GroupPlanningFailed

JIRA, WIKI = "0oa1jiraxxxxxxxxxxxx", "0oa2wikixxxxxxxxxxxx"
SALES = "00gSALES000000000000"
SALES_2 = "00gSALESTWO000000000"
OPS = "00gOPS00000000000000"
NEW = "00gNEW00000000000000"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


# ---------------------------------------------------------------- fakes

class FakeGroupState:
    """Same semantics as ``GroupState``: a fact lands only when its version is newer; a listing marks the members it
    did not show and whose fact is older than it as gone; ``applied_version`` only grows."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], dict[str, Any]] = {}
        self.facts: dict[tuple[str, str, str], dict[str, Any]] = {}

    async def pushed_of_app(self, app_id: str) -> list[dict[str, Any]]:
        return [dict(d) for (a, _), d in self.groups.items() if a == app_id and d["pushed"]]

    async def apps_pushing(self, group_id: str) -> list[dict[str, Any]]:
        return [dict(d) for (_, g), d in self.groups.items() if g == group_id and d["pushed"]]

    async def pushed_group_ids(self) -> set[str]:
        return {g for (_, g), d in self.groups.items() if d["pushed"]}

    async def is_pushed(self, app_id: str, group_id: str) -> bool:
        return bool(self.groups.get((app_id, group_id), {}).get("pushed"))

    async def set_pushed(self, app_id: str, group_id: str, *, pushed: bool, name: str | None = None,
                         entry: str | None = None, why: str | None = None) -> None:
        doc = self.groups.setdefault((app_id, group_id), {"app_id": app_id, "group_id": group_id})
        doc["pushed"] = pushed
        for field, value in (("name", name), ("entry", entry), ("why", why)):
            if value is not None:
                doc[field] = value

    async def next_group_version(self, app_id: str, group_id: str) -> int:
        doc = self.groups.setdefault((app_id, group_id), {"app_id": app_id, "group_id": group_id, "pushed": False})
        doc["version"] = doc.get("version", 0) + 1
        return doc["version"]

    async def want(self, app_id: str, group_id: str, facts: Iterable[tuple[str, bool]], version: int,
                   listing: str | None = None) -> list[str]:
        changed = []
        for user_id, member in facts:
            old = self.facts.get((app_id, group_id, user_id))
            if old is not None and old["version"] >= version:
                continue
            doc = old if old is not None else {"app_id": app_id, "group_id": group_id, "user_id": user_id,
                                               "applied_version": 0}
            doc.update(member=member, version=version)
            if listing:
                doc["listing"] = listing
            self.facts[(app_id, group_id, user_id)] = doc
            changed.append(user_id)
        return changed

    async def left_since_listing(self, app_id: str, group_id: str, listing: str, version: int) -> int:
        count = 0
        for (a, g, _), doc in self.facts.items():
            if (a, g) == (app_id, group_id) and doc["member"] and doc.get("listing") != listing \
                    and doc["version"] < version:
                doc.update(member=False, version=version, listing=listing)
                count += 1
        return count

    async def all_members(self, app_id: str, group_id: str) -> dict[str, dict[str, Any]]:
        return {u: dict(d) for (a, g, u), d in self.facts.items() if (a, g) == (app_id, group_id)}

    async def members(self, app_id: str, group_id: str, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = set(user_ids)
        return {u: d for u, d in (await self.all_members(app_id, group_id)).items() if u in wanted}

    async def mark_applied(self, app_id: str, group_id: str, applied: Iterable[tuple[str, int]],
                           error: str | None = None) -> None:
        for user_id, version in applied:
            doc = self.facts.get((app_id, group_id, user_id))
            if doc is not None and doc["applied_version"] < version:
                doc.update(applied_version=version, error=error)

    async def pending_for_user(self, app_id: str, user_id: str) -> list[str]:
        return [g for (a, g, u), d in self.facts.items()
                if (a, u) == (app_id, user_id) and d["member"] and d["applied_version"] < d["version"]]

    async def forget_group(self, app_id: str, group_id: str) -> None:
        for k in [k for k in self.facts if k[:2] == (app_id, group_id)]:
            del self.facts[k]

    # test helpers
    def fact(self, app_id: str, group_id: str, user_id: str) -> tuple[bool, int] | None:
        doc = self.facts.get((app_id, group_id, user_id))
        return (doc["member"], doc["version"]) if doc else None


class FakeGroupsOkta:
    """Okta groups by id (missing = 404), their members in pages, and Okta's clock."""

    def __init__(self, page_size: int = 200) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        self.group_members: dict[str, list[str]] = {}
        self.now = NOW
        self.page_size = page_size
        self.listings: list[str] = []
        self.during_listing: Any = None  # an async callable run after the first page was read

    def add_group(self, group_id: str, name: str, members: Iterable[str] = ()) -> None:
        self.groups[group_id] = {"id": group_id, "profile": {"name": name, "description": None}}
        self.group_members[group_id] = list(members)

    def server_now(self) -> datetime:
        return self.now

    async def get_group(self, group_id: str) -> dict[str, Any]:
        if group_id not in self.groups:
            raise OktaNotFoundError("okta GET /api/v1/groups/{id} -> 404: E0000007 Not found", 404)
        return self.groups[group_id]

    async def find_groups_named(self, name: str) -> list[dict[str, Any]]:
        return [g for g in self.groups.values() if g["profile"]["name"] == name]

    async def list_group_members(self, group_id: str):
        self.listings.append(group_id)
        ids = self.group_members.get(group_id, [])
        for start in range(0, max(len(ids), 1), self.page_size):  # an empty group answers one empty page
            yield [{"id": u, "profile": {"login": f"{u}@acme.com"}} for u in ids[start:start + self.page_size]]
            if start == 0 and self.during_listing is not None:
                await self.during_listing()


class FakeGroupOutbox:
    def __init__(self) -> None:
        self.plans: list[tuple[Any, str]] = []

    async def publish(self, plan: Any, pool: str) -> None:
        self.plans.append((plan, pool))

    def of(self, kind: type) -> list[Any]:
        return [p for p, _ in self.plans if isinstance(p, kind)]


class FakeGroupAudit:
    def __init__(self) -> None:
        self.records: list[tuple[AuditStep, dict[str, Any]]] = []

    async def record(self, step: AuditStep, **fields: Any) -> None:
        audit_record(step, fields)  # as the real one: refused without a reason code
        self.records.append((step, fields))

    def steps(self) -> list[AuditStep]:
        return [s for s, _ in self.records]

    def reasons(self) -> list[tuple[AuditStep, Reason]]:
        return [(s, f["reason"]) for s, f in self.records]

    def where(self, step: AuditStep) -> list[dict[str, Any]]:
        return [f for s, f in self.records if s is step]


# ---------------------------------------------------------------- helpers

def make(jira_groups: list[str], wiki_groups: list[str] | None = None, page_size: int = 200) -> GroupPlanner:
    apps = {JIRA: app_connector(JIRA, "jira", pool="fast", push_groups=jira_groups)}
    if wiki_groups is not None:
        apps[WIKI] = app_connector(WIKI, "wiki", push_groups=wiki_groups)
    return GroupPlanner(ORG, apps, FakeGroupState(), FakeGroupsOkta(page_size), FakeGroupOutbox(), FakeGroupAudit())


def sync(app_id: str = JIRA) -> AppSyncRequested:
    return AppSyncRequested(org=ORG, app_id=app_id, reason=SyncReason.STARTUP, scope="groups", sync_id="s1")


def group_event(event_type: str, group_id: str, *, user_id: str | None = None, name: str | None = None,
                published: datetime = NOW, uuid: str = "e1") -> OktaEventReceived:
    targets = [EventTarget(id=group_id, type="UserGroup", display_name=name)]
    if user_id:
        targets.append(EventTarget(id=user_id, type="User", alternate_id=f"{user_id}@acme.com"))
    return OktaEventReceived(org=ORG, event_uuid=uuid, event_type=event_type, published=published,
                             targets=tuple(targets))


def pushes(p: GroupPlanner) -> list[tuple[str, str, GroupAction, str | None, int]]:
    return [(pool, plan.okta_group_id, plan.action, plan.display_name, plan.version)
            for plan, pool in p.outbox.plans if isinstance(plan, GroupPlanned)]


LISTING_STAMP = micros(NOW - timedelta(seconds=1))


# ---------------------------------------------------------------- sync: resolving push_groups

async def test_sync_resolves_ids_and_exact_names_and_pushes_each_with_its_members():
    p = make([SALES, "Ops"])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx"])
    p.okta.add_group(OPS, "Ops", ["00u3xxxxxxxxxxxxxxxx"])
    p.okta.add_group("00gOPSLOWER000000000", "ops")  # another case: not the name

    assert await p.handle_sync(sync()) == 2

    assert sorted(pushes(p)) == [("fast", OPS, GroupAction.PUSH, "Ops", 1),
                                 ("fast", SALES, GroupAction.PUSH, "Sales", 1)]
    for plan, _ in p.outbox.plans:
        assert (plan.org, plan.app_id, plan.cause) == (ORG, JIRA, "sync:startup")
    assert await p.state.pushed_group_ids() == {SALES, OPS}
    assert (p.state.groups[(JIRA, SALES)]["name"], p.state.groups[(JIRA, SALES)]["entry"]) == ("Sales", SALES)
    assert (p.state.groups[(JIRA, OPS)]["name"], p.state.groups[(JIRA, OPS)]["entry"]) == ("Ops", "Ops")
    # members recorded as facts stamped with Okta's time less the margin
    assert p.state.fact(JIRA, SALES, "00u1xxxxxxxxxxxxxxxx") == (True, LISTING_STAMP)
    assert p.state.fact(JIRA, SALES, "00u2xxxxxxxxxxxxxxxx") == (True, LISTING_STAMP)
    assert p.state.fact(JIRA, OPS, "00u3xxxxxxxxxxxxxxxx") == (True, LISTING_STAMP)
    assert p.state.fact(JIRA, SALES, "00u3xxxxxxxxxxxxxxxx") is None
    planned = p.audit.where(AuditStep.PLANNED)
    assert sorted((f["okta_group_id"], f["detail"]) for f in planned) == [
        (OPS, "push group with 1 Okta member(s)"), (SALES, "push group with 2 Okta member(s)")]
    assert p.audit.reasons() == [(AuditStep.PLANNED, Reason.PLANNED)] * 2
    assert p.outbox.of(MembershipPlanned) == []


async def test_sync_of_an_unconfigured_app_does_nothing():
    p = make([SALES])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx"])
    assert await p.handle_sync(sync("0oaUNKNOWNxxxxxxxxxx")) == 0
    assert p.outbox.plans == [] and p.state.groups == {}


async def test_a_name_no_group_has_is_skipped_and_audited():
    p = make(["Sales"])
    p.okta.add_group(OPS, "Ops", ["00u1xxxxxxxxxxxxxxxx"])
    assert await p.handle_sync(sync()) == 0
    assert p.outbox.plans == []
    assert await p.state.pushed_group_ids() == set()
    [skipped] = p.audit.where(AuditStep.SKIPPED)
    assert skipped["okta_group_id"] is None and "no Okta group named 'Sales'" in skipped["detail"]
    assert skipped["reason"] is Reason.GROUP_NOT_IN_OKTA


async def test_an_id_no_group_has_fails_and_unlinks_the_group_pushed_before():
    p = make([SALES])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx"])
    await p.handle_sync(sync())
    del p.okta.groups[SALES]  # deleted in Okta while the bridge was down

    assert await p.handle_sync(sync()) == 0
    assert pushes(p)[-1] == ("fast", SALES, GroupAction.UNLINK, None, 2)
    assert not await p.state.is_pushed(JIRA, SALES)
    [failed] = p.audit.where(AuditStep.FAILED)
    assert failed["okta_group_id"] == SALES and "no Okta group has this id" in failed["detail"]
    assert failed["reason"] is Reason.GROUP_NOT_IN_OKTA  # acknowledged by the policy: not a dead letter


async def test_a_name_two_groups_have_fails_and_pushes_neither():
    p = make(["Sales"])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx"])
    p.okta.add_group(SALES_2, "Sales", ["00u2xxxxxxxxxxxxxxxx"])

    assert await p.handle_sync(sync()) == 0
    assert p.outbox.plans == []
    assert await p.state.pushed_group_ids() == set()
    assert p.state.facts == {}
    [failed] = p.audit.where(AuditStep.FAILED)
    assert failed["okta_group_id"] is None
    assert SALES in failed["detail"] and SALES_2 in failed["detail"] and "'Sales'" in failed["detail"]
    assert p.audit.reasons() == [(AuditStep.FAILED, Reason.GROUP_NAME_CONFLICT)]


async def test_a_name_two_groups_have_keeps_the_one_already_pushed_under_that_entry():
    p = make(["Sales"])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx"])
    await p.handle_sync(sync())
    p.okta.add_group(SALES_2, "Sales", ["00u2xxxxxxxxxxxxxxxx"])  # a newcomer with the same name

    assert await p.handle_sync(sync()) == 1
    assert pushes(p) == [("fast", SALES, GroupAction.PUSH, "Sales", 1), ("fast", SALES, GroupAction.PUSH, "Sales", 2)]
    assert await p.state.pushed_group_ids() == {SALES}
    assert p.state.fact(JIRA, SALES_2, "00u2xxxxxxxxxxxxxxxx") is None  # resolved before: the push follows the id it had
    assert p.audit.where(AuditStep.FAILED) == []


async def test_a_name_two_groups_have_after_the_group_it_named_was_deleted_keeps_the_other_one_pushed_under_it():
    p = make(["Sales"])
    await p.state.set_pushed(JIRA, "00gGONE0000000000000", pushed=True, name="Sales", entry="Sales")  # deleted in Okta
    await p.state.set_pushed(JIRA, SALES, pushed=True, name="Sales", entry="Sales")
    p.okta.add_group(SALES, "Sales")
    p.okta.add_group(SALES_2, "Sales")
    assert await p.handle_sync(sync()) == 1
    [skipped] = p.audit.where(AuditStep.SKIPPED)
    assert skipped["reason"] is Reason.GROUP_NAME_CONFLICT and skipped["okta_group_id"] == SALES
    assert SALES_2 in skipped["detail"] and p.audit.where(AuditStep.FAILED) == []


async def test_the_already_pushed_group_only_counts_under_the_same_entry():
    """A group pushed by id does not settle an ambiguous name entry."""
    p = make([SALES])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx"])
    p.okta.add_group(SALES_2, "Sales", ["00u2xxxxxxxxxxxxxxxx"])
    await p.handle_sync(sync())
    p.apps[JIRA] = app_connector(JIRA, "jira", pool="fast", push_groups=["Sales"])

    assert await p.handle_sync(sync()) == 0
    assert pushes(p)[-1] == ("fast", SALES, GroupAction.UNLINK, None, 2)
    assert await p.state.pushed_group_ids() == set()
    assert len(p.audit.where(AuditStep.FAILED)) == 1


async def test_one_group_listed_by_id_and_by_name_is_pushed_once():
    p = make([SALES, "Sales"])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx"])
    assert await p.handle_sync(sync()) == 1
    assert pushes(p) == [("fast", SALES, GroupAction.PUSH, "Sales", 1)]
    [skipped] = p.audit.where(AuditStep.SKIPPED)
    assert skipped["okta_group_id"] == SALES and "twice" in skipped["detail"]
    assert skipped["reason"] is Reason.GROUP_LISTED_TWICE


async def test_groups_dropped_from_push_groups_are_unlinked():
    p = make([SALES, OPS])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx"])
    p.okta.add_group(OPS, "Ops", ["00u2xxxxxxxxxxxxxxxx"])
    await p.handle_sync(sync())
    p.apps[JIRA] = app_connector(JIRA, "jira", pool="fast", push_groups=[SALES])
    p.outbox.plans.clear()

    assert await p.handle_sync(sync()) == 1
    assert sorted(pushes(p)) == [("fast", OPS, GroupAction.UNLINK, None, 2),
                                 ("fast", SALES, GroupAction.PUSH, "Sales", 2)]
    assert await p.state.pushed_group_ids() == {SALES}
    assert "no longer in push_groups" in p.state.groups[(JIRA, OPS)]["why"]
    assert not any(plan.action is GroupAction.DELETE for plan in p.outbox.of(GroupPlanned))
    # a group already unlinked is not unlinked again
    p.outbox.plans.clear()
    await p.handle_sync(sync())
    assert [a for _, _, a, _, _ in pushes(p)] == [GroupAction.PUSH]


async def test_a_group_pushed_by_name_and_renamed_in_okta_stays_pushed_at_the_next_sync():
    p = make(["Sales"])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx"])
    await p.handle_sync(sync())
    p.okta.groups[SALES]["profile"]["name"] = "Sales EU"
    await p.handle_event(group_event("group.profile.update", SALES, name="Sales EU"))
    assert pushes(p)[-1] == ("fast", SALES, GroupAction.PUSH, "Sales EU", 2)

    await p.handle_sync(sync())  # the poller restarted
    assert GroupAction.UNLINK not in [a for _, _, a, _, _ in pushes(p)]
    assert await p.state.is_pushed(JIRA, SALES)


# ---------------------------------------------------------------- sync: listings

async def test_a_listing_follows_pages_and_marks_members_it_did_not_show_as_gone():
    p = make([SALES], page_size=2)
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx", "00u3xxxxxxxxxxxxxxxx", "00u4xxxxxxxxxxxxxxxx", "00u5xxxxxxxxxxxxxxxx"])
    await p.handle_sync(sync())
    assert {u for (_, _, u), d in p.state.facts.items() if d["member"]} == {"00u1xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx", "00u3xxxxxxxxxxxxxxxx", "00u4xxxxxxxxxxxxxxxx", "00u5xxxxxxxxxxxxxxxx"}

    p.okta.group_members[SALES] = ["00u1xxxxxxxxxxxxxxxx", "00u5xxxxxxxxxxxxxxxx"]
    p.okta.now = NOW + timedelta(minutes=5)
    await p.handle_sync(sync())
    later = micros(p.okta.now - timedelta(seconds=1))
    assert {u: p.state.fact(JIRA, SALES, u) for u in ["00u1xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx", "00u3xxxxxxxxxxxxxxxx", "00u4xxxxxxxxxxxxxxxx", "00u5xxxxxxxxxxxxxxxx"]} == {
        "00u1xxxxxxxxxxxxxxxx": (True, later), "00u2xxxxxxxxxxxxxxxx": (False, later), "00u3xxxxxxxxxxxxxxxx": (False, later), "00u4xxxxxxxxxxxxxxxx": (False, later), "00u5xxxxxxxxxxxxxxxx": (True, later)}
    assert "push group with 2 Okta member(s)" in p.audit.where(AuditStep.PLANNED)[-1]["detail"]


async def test_an_emptied_group_marks_every_member_gone():
    p = make([SALES])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx"])
    await p.handle_sync(sync())
    p.okta.group_members[SALES] = []
    p.okta.now = NOW + timedelta(minutes=5)
    await p.handle_sync(sync())
    assert [d["member"] for d in p.state.facts.values()] == [False, False]


async def test_a_change_made_while_the_group_is_listed_wins_over_the_listing():
    p = make([SALES], page_size=1)
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx"])
    await p.state.set_pushed(JIRA, SALES, pushed=True, name="Sales", entry=SALES)

    async def remove_u2_meanwhile() -> None:  # u2 leaves at NOW - 0.5 s; the listing still shows it on page 2
        await p.handle_event(group_event("group.user_membership.remove", SALES, user_id="00u2xxxxxxxxxxxxxxxx",
                                         published=NOW - timedelta(milliseconds=500), uuid="e-rm"))

    p.okta.during_listing = remove_u2_meanwhile
    await p.handle_sync(sync())
    assert p.state.fact(JIRA, SALES, "00u1xxxxxxxxxxxxxxxx") == (True, LISTING_STAMP)
    assert p.state.fact(JIRA, SALES, "00u2xxxxxxxxxxxxxxxx") == (False, micros(NOW - timedelta(milliseconds=500)))


# ---------------------------------------------------------------- membership events

async def test_membership_events_record_the_fact_and_plan_the_member():
    p = make([SALES])
    await p.state.set_pushed(JIRA, SALES, pushed=True, name="Sales")
    at = datetime(2026, 3, 1, 12, 30, 0, 123000, tzinfo=UTC)

    await p.handle_event(group_event("group.user_membership.add", SALES, user_id="00u1xxxxxxxxxxxxxxxx", published=at, uuid="e-add"))
    assert p.state.fact(JIRA, SALES, "00u1xxxxxxxxxxxxxxxx") == (True, micros(at))
    [(plan, pool)] = p.outbox.plans
    assert pool == "fast"
    assert plan == MembershipPlanned(org=ORG, app_id=JIRA, okta_group_id=SALES, okta_user_ids=("00u1xxxxxxxxxxxxxxxx",),
                                     cause="group.user_membership.add", event_uuid="e-add")
    [planned] = p.audit.where(AuditStep.PLANNED)
    assert (planned["okta_user_id"], planned["okta_group_id"], planned["detail"]) == ("00u1xxxxxxxxxxxxxxxx", SALES, "add member")
    assert planned["reason"] is Reason.PLANNED

    later = at + timedelta(seconds=3)
    await p.handle_event(group_event("group.user_membership.remove", SALES, user_id="00u1xxxxxxxxxxxxxxxx", published=later,
                                     uuid="e-rm"))
    assert p.state.fact(JIRA, SALES, "00u1xxxxxxxxxxxxxxxx") == (False, micros(later))
    assert [pl.cause for pl in p.outbox.of(MembershipPlanned)] == ["group.user_membership.add",
                                                                    "group.user_membership.remove"]
    assert p.audit.where(AuditStep.PLANNED)[-1]["detail"] == "remove member"
    assert p.okta.listings == []  # no Okta read for a membership event


async def test_a_late_older_membership_event_does_not_change_the_fact_but_is_still_planned():
    """The older fact loses; the event is still planned (a retry after a failed publish finds its own fact stored,
    so "not newer" cannot mean "already planned"); the dispatcher reads the stored, newest fact."""
    p = make([SALES])
    await p.state.set_pushed(JIRA, SALES, pushed=True, name="Sales")
    await p.handle_event(group_event("group.user_membership.remove", SALES, user_id="00u1xxxxxxxxxxxxxxxx",
                                     published=NOW, uuid="e-new"))
    await p.handle_event(group_event("group.user_membership.add", SALES, user_id="00u1xxxxxxxxxxxxxxxx",
                                     published=NOW - timedelta(seconds=2), uuid="e-old"))
    assert p.state.fact(JIRA, SALES, "00u1xxxxxxxxxxxxxxxx") == (False, micros(NOW))
    assert [pl.event_uuid for pl in p.outbox.of(MembershipPlanned)] == ["e-new", "e-old"]
    planned = p.audit.where(AuditStep.PLANNED)
    assert planned[-1]["event_uuid"] == "e-old" and "a newer fact is stored" in planned[-1]["detail"]

    # the same event redelivered leaves the fact as it is
    await p.handle_event(group_event("group.user_membership.remove", SALES, user_id="00u1xxxxxxxxxxxxxxxx",
                                     published=NOW, uuid="e-new"))
    assert p.state.fact(JIRA, SALES, "00u1xxxxxxxxxxxxxxxx") == (False, micros(NOW))


async def test_membership_of_a_group_pushed_by_two_apps_plans_for_each():
    p = make([SALES], [SALES])
    await p.state.set_pushed(JIRA, SALES, pushed=True, name="Sales")
    await p.state.set_pushed(WIKI, SALES, pushed=True, name="Sales")
    await p.handle_event(group_event("group.user_membership.add", SALES, user_id="00u1xxxxxxxxxxxxxxxx"))
    assert sorted((pool, plan.app_id) for plan, pool in p.outbox.plans) == [("default", WIKI), ("fast", JIRA)]
    assert p.state.fact(JIRA, SALES, "00u1xxxxxxxxxxxxxxxx") == p.state.fact(WIKI, SALES, "00u1xxxxxxxxxxxxxxxx") == (True, micros(NOW))


async def test_events_of_groups_no_configured_app_pushes_are_skipped():
    p = make([SALES])
    await p.state.set_pushed(JIRA, SALES, pushed=False)
    await p.state.set_pushed("0oaGONExxxxxxxxxxxxx", OPS, pushed=True, name="Ops")  # an app no longer configured
    for group_id in (SALES, OPS, NEW):
        await p.handle_event(group_event("group.user_membership.add", group_id, user_id="00u1xxxxxxxxxxxxxxxx"))
    assert p.outbox.plans == [] and p.state.facts == {}
    assert p.audit.reasons() == [(AuditStep.SKIPPED, Reason.NOT_CONFIGURED)] * 3


# ---------------------------------------------------------------- group events

async def test_a_profile_update_plans_a_push_with_the_new_name():
    p = make([SALES])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx"])
    await p.handle_sync(sync())
    p.okta.groups[SALES]["profile"]["name"] = "Sales EMEA"

    await p.handle_event(group_event("group.profile.update", SALES, name="Sales EMEA", uuid="e-ren"))
    plan = p.outbox.of(GroupPlanned)[-1]
    assert (plan.action, plan.display_name, plan.version, plan.cause, plan.event_uuid) == (
        GroupAction.PUSH, "Sales EMEA", 2, "group.profile.update", "e-ren")
    assert p.state.groups[(JIRA, SALES)]["name"] == "Sales EMEA"
    assert p.state.groups[(JIRA, SALES)]["entry"] == SALES
    assert await p.state.is_pushed(JIRA, SALES)


async def test_a_profile_update_of_a_group_gone_from_okta_is_skipped():
    p = make([SALES])
    await p.state.set_pushed(JIRA, SALES, pushed=True, name="Sales")
    await p.handle_event(group_event("group.profile.update", SALES, name="Sales"))
    assert p.outbox.plans == []
    assert p.audit.reasons() == [(AuditStep.SKIPPED, Reason.GROUP_NOT_IN_OKTA)]
    assert await p.state.is_pushed(JIRA, SALES)


async def test_a_group_deleted_in_okta_is_unlinked():
    p = make([SALES])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx"])
    await p.handle_sync(sync())
    del p.okta.groups[SALES]

    await p.handle_event(group_event("group.lifecycle.delete", SALES, name="Sales", uuid="e-del"))
    plan = p.outbox.of(GroupPlanned)[-1]
    assert (plan.action, plan.version, plan.cause, plan.event_uuid) == (GroupAction.UNLINK, 2,
                                                                        "group.lifecycle.delete", "e-del")
    assert not await p.state.is_pushed(JIRA, SALES)
    assert await p.state.apps_pushing(SALES) == []
    assert "deleted in Okta" in p.state.groups[(JIRA, SALES)]["why"]


async def test_a_created_group_with_a_configured_name_is_pushed():
    p = make(["Sales", OPS])
    p.okta.add_group(NEW, "Sales", ["00u1xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx"])

    await p.handle_event(group_event("group.lifecycle.create", NEW, name="Sales", uuid="e-new"))
    assert pushes(p) == [("fast", NEW, GroupAction.PUSH, "Sales", 1)]
    plan = p.outbox.of(GroupPlanned)[0]
    assert (plan.cause, plan.event_uuid) == ("group.lifecycle.create", "e-new")
    assert (p.state.groups[(JIRA, NEW)]["pushed"], p.state.groups[(JIRA, NEW)]["entry"]) == (True, "Sales")
    assert p.state.fact(JIRA, NEW, "00u1xxxxxxxxxxxxxxxx") == (True, LISTING_STAMP)
    assert p.state.fact(JIRA, NEW, "00u2xxxxxxxxxxxxxxxx") == (True, LISTING_STAMP)


async def test_a_created_group_of_another_name_is_skipped():
    p = make(["Sales"])
    p.okta.add_group(NEW, "Marketing", ["00u1xxxxxxxxxxxxxxxx"])
    await p.handle_event(group_event("group.lifecycle.create", NEW, name="Marketing"))
    assert p.outbox.plans == [] and p.state.groups == {}
    assert p.audit.reasons() == [(AuditStep.SKIPPED, Reason.NOT_CONFIGURED)]


async def test_a_created_group_whose_name_another_group_has_is_not_pushed():
    p = make(["Sales"])
    p.okta.add_group(SALES, "Sales", ["00u1xxxxxxxxxxxxxxxx"])
    p.okta.add_group(NEW, "Sales", ["00u2xxxxxxxxxxxxxxxx"])
    await p.handle_event(group_event("group.lifecycle.create", NEW, name="Sales"))
    assert p.outbox.plans == []
    assert not await p.state.is_pushed(JIRA, NEW)
    [failed] = p.audit.where(AuditStep.FAILED)
    assert failed["okta_group_id"] == NEW and SALES in failed["detail"]
    assert p.audit.reasons() == [(AuditStep.FAILED, Reason.GROUP_NAME_CONFLICT)]


async def test_a_created_group_renamed_before_it_was_read_is_not_pushed():
    p = make(["Sales"])
    p.okta.add_group(NEW, "Sales Old")
    await p.handle_event(group_event("group.lifecycle.create", NEW, name="Sales"))
    assert p.outbox.plans == []
    assert not await p.state.is_pushed(JIRA, NEW)


async def test_a_created_group_deleted_before_it_was_read_is_skipped_as_not_in_okta():
    p = make(["Sales"])
    await p.handle_event(group_event("group.lifecycle.create", NEW, name="Sales"))
    assert p.outbox.plans == []
    assert p.audit.reasons() == [(AuditStep.SKIPPED, Reason.GROUP_NOT_IN_OKTA)]


async def test_a_group_deleted_in_okta_and_a_group_dropped_from_push_groups_are_planned_unlinks():
    p = make([SALES])
    p.okta.add_group(SALES, "Sales")
    await p.handle_sync(sync())
    await p.handle_event(group_event("group.lifecycle.delete", SALES, name="Sales"))
    p.apps[JIRA] = app_connector(JIRA, "jira", pool="fast", push_groups=[OPS])
    await p.state.set_pushed(JIRA, SALES, pushed=True, name="Sales")
    await p.handle_sync(sync())  # OPS does not exist: not pushed; SALES is no longer listed: unlinked
    assert p.audit.reasons() == [(AuditStep.PLANNED, Reason.PLANNED)] * 2 + [
        (AuditStep.FAILED, Reason.GROUP_NOT_IN_OKTA), (AuditStep.PLANNED, Reason.PLANNED)]


@pytest.mark.parametrize("result", [Failure(Reason.TARGET_REJECTED, "refused"), Failure(Reason.INTERNAL, "db away"),
                                    Failure(Reason.OKTA_TRANSIENT, "okta 503")])
async def test_a_part_the_policy_would_retry_or_dead_letter_fails_the_whole_message_with_its_reason(result):
    """Only an acknowledged part is recorded in place; any other fails the message, which the intake settles by
    the same reason code (``failure_of``)."""
    p = make([SALES])
    with pytest.raises(GroupPlanningFailed) as caught:
        await p._settle(result, JIRA, SALES, "sync:startup")
    assert p.audit.records == []
    assert failure_of(caught.value).reason is result.reason
    await p._settle(Done(AuditStep.SKIPPED, Reason.NOT_CONFIGURED, "nothing"), JIRA, SALES, "sync:startup")
    assert p.audit.reasons() == [(AuditStep.SKIPPED, Reason.NOT_CONFIGURED)]
