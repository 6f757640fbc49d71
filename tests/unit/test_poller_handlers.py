"""Poller over in-memory ports: start-up syncs, cursor handling, dedupe, routing and dead-lettering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from okta_bridge.contracts import SyncReason
from okta_bridge.okta_client import OktaCursorRejectedError
from queue_poller.handlers import FRESH_LINK_MARGIN, Poller, PollerConfig
from queue_poller.ports import CursorState
from tests.unit.fakes import ORG, FakeLogSource, FakeOutbox, FakePollerState, membership_event, user_event

JIRA, WIKI = "0oa1jiraxxxxxxxxxxxx", "0oa2wikixxxxxxxxxxxx"
OWN_TOKEN = "00Tbridge"
LINK = f"{ORG}/api/v1/logs?after=abc&sortOrder=ASCENDING"
NEXT = f"{ORG}/api/v1/logs?after=def&sortOrder=ASCENDING"
START = datetime(2026, 1, 1, tzinfo=UTC)


def make(stored: CursorState | None = None, *, apps=(JIRA, WIKI), assignments=None, page_limit: int = 100,
         start_from: datetime | None = START) -> tuple[Poller, FakeLogSource, FakePollerState, FakeOutbox]:
    cfg = PollerConfig(org=ORG, app_ids=tuple(apps), own_token_id=OWN_TOKEN, start_from=start_from,
                       max_cursor_age=timedelta(days=7), page_limit=page_limit, idle_interval_s=5.0,
                       min_interval_s=0.5)
    source, store = FakeLogSource(), FakePollerState(stored, assignments)
    outbox = FakeOutbox(store.log)
    return Poller(cfg, source, store, outbox), source, store, outbox


def recent() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=1)


async def started(stored: CursorState | None = None, **kw):
    poller, source, store, outbox = make(stored or CursorState(LINK, recent(), [JIRA, WIKI]), **kw)
    await poller.start()
    return poller, source, store, outbox


# ------------------------------------------------------------------ start


async def test_first_start_syncs_every_app_and_starts_from_a_polling_link():
    poller, source, store, outbox = make(None)
    await poller.start()
    assert outbox.syncs == [(JIRA, SyncReason.INITIAL), (WIKI, SyncReason.INITIAL)]
    assert source.fresh_links == [START]
    assert store.stored.next_link == source.polling_link(START)
    assert store.stored.known_apps == [JIRA, WIKI]


async def test_first_start_without_start_from_polls_from_okta_now_less_the_margin():
    poller, source, _, _ = make(None, start_from=None)
    before = datetime.now(UTC)
    await poller.start()
    assert before - FRESH_LINK_MARGIN <= source.fresh_links[0] <= datetime.now(UTC) - FRESH_LINK_MARGIN


async def test_stored_cursor_resumes_without_any_sync():
    poller, source, store, outbox = make(CursorState(LINK, recent(), [JIRA, WIKI]))
    await poller.start()
    assert outbox.syncs == []
    assert source.fresh_links == []
    await poller.poll_once()
    assert source.fetched == [LINK]


async def test_a_new_app_in_the_file_is_synced_alone():
    poller, source, store, outbox = make(CursorState(LINK, recent(), [JIRA]))
    await poller.start()
    assert outbox.syncs == [(WIKI, SyncReason.NEW_APP)]
    assert store.stored.next_link == LINK
    assert store.stored.known_apps == [JIRA, WIKI]


async def test_an_expired_cursor_syncs_every_app_and_polls_afresh():
    stale = datetime.now(UTC) - timedelta(days=8)
    poller, source, store, outbox = make(CursorState(LINK, stale, [JIRA, WIKI]))
    await poller.start()
    assert outbox.syncs == [(JIRA, SyncReason.CURSOR_EXPIRED), (WIKI, SyncReason.CURSOR_EXPIRED)]
    assert len(source.fresh_links) == 1
    assert store.stored.next_link != LINK
    await poller.poll_once()
    assert source.fetched == [store.saved[0].next_link]


async def test_a_cursor_just_inside_the_max_age_is_kept():
    poller, source, store, outbox = make(CursorState(LINK, datetime.now(UTC) - timedelta(days=6), [JIRA, WIKI]))
    await poller.start()
    assert outbox.syncs == [] and store.stored.next_link == LINK


# ------------------------------------------------------------------ cursor rejected


async def test_a_rejected_cursor_syncs_every_app_and_polls_afresh():
    poller, source, store, outbox = await started()
    source.fail_with = OktaCursorRejectedError("okta GET /api/v1/logs -> 400: E0000001", 400)
    assert await poller.poll_once() is True
    assert outbox.syncs == [(JIRA, SyncReason.CURSOR_REJECTED), (WIKI, SyncReason.CURSOR_REJECTED)]
    assert store.stored.next_link == source.polling_link(source.fresh_links[0])
    assert store.stored.next_link != LINK


async def test_other_errors_move_no_cursor():
    poller, source, store, outbox = await started()
    saves = len(store.saved)
    source.fail_with = RuntimeError("okta down")
    with pytest.raises(RuntimeError):
        await poller.poll_once()
    assert len(store.saved) == saves and outbox.syncs == []


# ------------------------------------------------------------------ pages


async def test_membership_events_of_configured_apps_are_published_and_the_cursor_moves_after():
    poller, source, store, outbox = await started()
    source.pages[LINK] = ([membership_event("e1"), membership_event("e2", "remove", app_id=WIKI)], NEXT)
    assert await poller.poll_once() is False
    assert [e.event_uuid for e in outbox.events] == ["e1", "e2"]
    assert store.stored.next_link == NEXT
    assert store.log[-3:] == ["publish e1", "publish e2", f"save {NEXT}"]
    assert store.seen == {"e1", "e2"}
    await poller.poll_once()
    assert source.fetched == [LINK, NEXT]


async def test_events_of_other_apps_are_not_published():
    poller, source, store, outbox = await started()
    source.pages[LINK] = ([membership_event("e1", app_id="0oa9otherxxxxxxxxxxx")], NEXT)
    await poller.poll_once()
    assert outbox.events == [] and store.stored.next_link == NEXT


async def test_empty_page_keeps_following_the_next_link():
    poller, source, store, _ = await started()
    source.pages[LINK] = ([], NEXT)
    assert await poller.poll_once() is False
    assert store.stored.next_link == NEXT
    assert store.stored.last_success_at is not None


async def test_a_page_without_next_keeps_the_current_link():
    poller, source, store, _ = await started()
    source.pages[LINK] = ([membership_event("e1")], None)
    await poller.poll_once()
    assert store.stored.next_link == LINK


async def test_a_full_page_asks_to_poll_again_at_once():
    poller, source, _, _ = await started(page_limit=2)
    source.pages[LINK] = ([membership_event("e1"), membership_event("e2")], NEXT)
    assert await poller.poll_once() is True


async def test_an_event_seen_before_is_not_published_again():
    poller, source, store, outbox = await started()
    store.seen.add("e1")
    source.pages[LINK] = ([membership_event("e1"), membership_event("e2")], NEXT)
    await poller.poll_once()
    assert [e.event_uuid for e in outbox.events] == ["e2"]


async def test_a_re_read_page_publishes_nothing_twice():
    poller, source, store, outbox = await started()
    page = ([membership_event("e1"), membership_event("e1")], LINK)  # duplicate in the page, and no new link
    source.pages[LINK] = page
    await poller.poll_once()
    await poller.poll_once()
    assert [e.event_uuid for e in outbox.events] == ["e1"]


async def test_own_token_membership_updates_are_ignored_but_others_tokens_are_not():
    poller, source, _, outbox = await started()
    source.pages[LINK] = ([membership_event("own", "update", token_id=OWN_TOKEN),
                           membership_event("admin", "update", token_id="00Tadmin"),
                           membership_event("console", "update")], NEXT)
    await poller.poll_once()
    assert [e.event_uuid for e in outbox.events] == ["admin", "console"]


@pytest.mark.parametrize("kind", ["add", "remove"])
async def test_own_token_is_ignored_only_for_the_updates_the_bridge_itself_writes(kind):
    """The bridge writes app-user profiles (``.update``), never assignments: an assignment made with the same
    token is someone's real change (design-notes: "without ignoring the admin's real changes")."""
    poller, source, _, outbox = await started()
    source.pages[LINK] = ([membership_event("own", kind, token_id=OWN_TOKEN)], NEXT)
    await poller.poll_once()
    assert [e.event_uuid for e in outbox.events] == ["own"]


async def test_user_events_are_published_only_for_users_with_assignments():
    poller, source, _, outbox = await started(assignments={(JIRA, "00u1xxxxxxxxxxxxxxxx"), ("0oa9otherxxxxxxxxxxx", "00u3xxxxxxxxxxxxxxxx")})
    source.pages[LINK] = ([user_event("u1", user_id="00u1xxxxxxxxxxxxxxxx"), user_event("u2", user_id="00u2xxxxxxxxxxxxxxxx"),
                           user_event("u3", "lifecycle.suspend", user_id="00u3xxxxxxxxxxxxxxxx")], NEXT)
    await poller.poll_once()
    assert [e.event_uuid for e in outbox.events] == ["u1"]


async def test_events_that_mean_no_work_are_not_published():
    poller, source, _, outbox = await started(assignments={(JIRA, "00u1xxxxxxxxxxxxxxxx")})
    noise = user_event("n1", user_id="00u1xxxxxxxxxxxxxxxx")
    noise["eventType"] = "user.session.start"
    source.pages[LINK] = ([noise], NEXT)
    await poller.poll_once()
    assert outbox.events == [] and outbox.dead == []


@pytest.mark.parametrize("raw", [
    "not an object",
    {"eventType": "application.user_membership.add", "published": "2026-01-01T00:00:00Z"},  # no uuid
    {"uuid": "m1", "eventType": "application.user_membership.add", "published": "2026-01-01T00:00:00Z",
     "target": [{"id": "0oa1jiraxxxxxxxxxxxx", "type": "AppInstance"}]},  # no User target
    {"uuid": "m2", "eventType": "user.lifecycle.suspend", "published": "2026-01-01T00:00:00Z", "target": []},
    {"uuid": "m3", "eventType": "user.lifecycle.suspend", "published": "not a date",
     "target": [{"id": "00u1xxxxxxxxxxxxxxxx", "type": "User"}]},
    {"uuid": "m4", "eventType": "user.lifecycle.suspend", "published": "2026-01-01T00:00:00Z",
     "target": [{"type": "User"}]},  # target without id
    {"uuid": "m5", "eventType": "user.lifecycle.suspend", "published": "2026-01-01T00:00:00Z",
     "target": [{"id": "00u1xxxxxxxxxxxxxxxx", "type": "User"}], "transaction": "tx-1"},  # transaction not an object
    {"uuid": "m6", "eventType": "user.lifecycle.suspend", "published": "2026-01-01T00:00:00Z",
     "target": [{"id": "00u1xxxxxxxxxxxxxxxx", "type": "User"}], "transaction": {"id": "tx", "detail": ["x"]}},
    {"uuid": "m7", "eventType": "user.lifecycle.suspend", "published": "2026-01-01T00:00:00Z",
     "target": "00u1xxxxxxxxxxxxxxxx"},  # target not a list
])
async def test_malformed_events_are_dead_lettered_and_the_rest_still_flows(raw):
    poller, source, store, outbox = await started()
    source.pages[LINK] = ([raw, membership_event("ok")], NEXT)
    await poller.poll_once()
    assert [r for r, _ in outbox.dead] == [raw]
    assert outbox.dead[0][1]
    assert [e.event_uuid for e in outbox.events] == ["ok"]
    assert store.stored.next_link == NEXT


async def test_the_cursor_is_not_saved_when_publishing_fails():
    poller, source, store, outbox = await started()
    source.pages[LINK] = ([membership_event("e1"), membership_event("e2")], NEXT)

    async def broken(event, ctx):
        if event.event_uuid == "e2":
            raise ConnectionError("broker down")
        outbox.events.append(event)

    outbox.publish_event = broken  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await poller.poll_once()
    assert store.stored.next_link == LINK  # the page is read again; e1 may be published twice, which is harmless
