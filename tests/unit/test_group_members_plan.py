"""GroupDispatcher._plan_members: which members to add, remove, leave alone or keep waiting, from the stored facts,
the user links and (when known) the target group's own member list."""

from __future__ import annotations

from typing import Any

from scim_dispatcher.groups import GroupDispatcher
from scim_dispatcher.ports import Link

APP = "0oa1jira"
GROUP = "00gSALES000000000000"


class FakeUserLinks:
    """Okta user -> target account, as ``MongoLinks.get_many`` answers (users without a link are absent)."""

    def __init__(self, targets: dict[str, str | None]) -> None:
        self.links = {u: Link(t, 1, True) for u, t in targets.items()}
        self.asked: list[tuple[str, list[str]]] = []

    async def get_many(self, app_id: str, user_ids: list[str]) -> dict[str, Link]:
        self.asked.append((app_id, list(user_ids)))
        return {u: self.links[u] for u in user_ids if u in self.links and app_id == APP}


def dispatcher(targets: dict[str, str | None]) -> GroupDispatcher:
    return GroupDispatcher(apps={}, clients={}, state=None, group_links=None, user_links=FakeUserLinks(targets),
                           leases=None)


def facts(**members: tuple[bool, int]) -> dict[str, dict[str, Any]]:
    return {u: {"app_id": APP, "group_id": GROUP, "user_id": u, "member": m, "version": v, "applied_version": 0}
            for u, (m, v) in members.items()}


async def test_members_without_a_link_are_pending():
    d = dispatcher({"u1": "t1", "u2": None})  # u2 linked but without a target account yet; u3 not linked
    work = await d._plan_members(facts(u1=(True, 10), u2=(True, 11), u3=(True, 12)), set())
    assert work.pending == 2
    assert work.add == [("u1", "t1", 10)]
    assert (work.remove, work.settled) == ([], [])
    assert d.user_links.asked == [(APP, ["u1", "u2", "u3"])]


async def test_members_already_on_the_target_are_settled():
    d = dispatcher({"u1": "t1", "u2": "t2"})
    work = await d._plan_members(facts(u1=(True, 10), u2=(True, 20)), {"t1", "t9"})
    assert work.settled == [("u1", 10)]
    assert work.add == [("u2", "t2", 20)]
    assert (work.remove, work.pending) == ([], 0)  # additive: t9, added on the target, survives


async def test_removals_only_for_linked_members_present_on_the_target():
    d = dispatcher({"u1": "t1", "u2": "t2"})
    work = await d._plan_members(facts(u1=(False, 10), u2=(False, 20), u3=(False, 30)), {"t1", "t9"})
    assert work.remove == [("u1", "t1", 10)]
    # u2 is not on the target, u3 has no account: nothing to send, the fact is settled
    assert sorted(work.settled) == [("u2", 20), ("u3", 30)]
    assert (work.add, work.pending) == ([], 0)


async def test_okta_authority_also_removes_target_only_members():
    d = dispatcher({"u1": "t1", "u2": "t2", "u3": "t3"})
    work = await d._plan_members(facts(u1=(True, 10), u2=(False, 20), u4=(True, 40)),
                                 {"t1", "t2", "t3", "t8", "t9"}, authority="okta")
    assert work.settled == [("u1", 10)]
    assert work.pending == 1  # u4: no account yet
    assert work.add == []
    # u2's removal carries its fact; t3 (linked, but no fact in this group), t8 and t9 are target-only
    assert work.remove == [("u2", "t2", 20), (None, "t3", 0), (None, "t8", 0), (None, "t9", 0)]


async def test_okta_authority_keeps_wanted_members_and_does_not_remove_twice():
    d = dispatcher({"u1": "t1", "u2": "t2"})
    work = await d._plan_members(facts(u1=(True, 10), u2=(False, 20)), {"t1", "t2"}, authority="okta")
    assert [t for _, t, _ in work.remove] == ["t2"]
    assert work.settled == [("u1", 10)]


async def test_okta_authority_with_no_facts_empties_the_target_group():
    d = dispatcher({})
    work = await d._plan_members({}, {"t2", "t1"}, authority="okta")
    assert work.remove == [(None, "t1", 0), (None, "t2", 0)]
    assert (work.add, work.settled, work.pending) == ([], [], 0)
    assert d.user_links.asked == []  # no links to read


async def test_additive_with_no_facts_touches_nothing():
    d = dispatcher({})
    work = await d._plan_members({}, {"t1"})
    assert (work.add, work.remove, work.settled, work.pending) == ([], [], [], 0)


async def test_single_changes_add_and_remove_without_the_target_list():
    d = dispatcher({"u1": "t1", "u2": "t2", "u3": None})
    work = await d._plan_members(facts(u1=(True, 10), u2=(False, 20), u3=(True, 30), u4=(False, 40)), None)
    assert work.add == [("u1", "t1", 10)]
    assert work.remove == [("u2", "t2", 20)]
    assert work.settled == [("u4", 40)]  # no account: nothing to remove
    assert work.pending == 1


async def test_single_changes_never_remove_target_only_members_even_with_okta_authority():
    d = dispatcher({"u1": "t1"})
    work = await d._plan_members(facts(u1=(True, 10)), None, authority="okta")
    assert work.add == [("u1", "t1", 10)]
    assert work.remove == []


async def test_members_display_is_the_userName_kept_with_the_account_link():
    d = dispatcher({"u1": "t1", "u2": "t2"})
    d.user_links.links["u1"] = Link("t1", 1, True, "ann@acme.com")  # u2's link predates the userName: no display
    work = await d._plan_members(facts(u1=(True, 10), u2=(True, 20)), set())
    assert work.display == {"t1": "ann@acme.com"}
