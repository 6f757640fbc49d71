"""Poller over in-memory ports: start-up syncs, cursor handling, dedupe, routing and dead-lettering."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from okta_bridge.bus import PUBLISH_WINDOW
from okta_bridge.contracts import SyncReason
from okta_bridge.okta_client import OktaCursorRejectedError
from queue_poller.handlers import FRESH_LINK_MARGIN, Poller, PollerConfig
from queue_poller.ports import CursorState
from tests.unit.fakes import ORG, FakeLogSource, FakeOutbox, FakePollerState, membership_event, user_event

JIRA, WIKI = "0oa1jiraxxxxxxxxxxxx", "0oa2wikixxxxxxxxxxxx"
OWN_TOKEN = "00Tbridgexxxxxxxxxxx"
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
                           membership_event("admin", "update", token_id="00Tadminxxxxxxxxxxxx"),
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
    assert store.stored.next_link == LINK  # the page is read again


async def test_a_refused_event_fails_the_page_after_every_window_was_tried_and_only_it_goes_out_again():
    poller, source, store, outbox = await started()
    uuids = [f"e{i:03d}" for i in range(PUBLISH_WINDOW + 1)]  # the last one is in a second window
    source.pages[LINK] = ([membership_event(u) for u in uuids], NEXT)
    refuse = {"e005"}

    async def flaky(event, ctx):
        await asyncio.sleep(0)
        if event.event_uuid in refuse:
            raise ConnectionError("returned: no queue took it")
        outbox.events.append(event)

    outbox.publish_event = flaky  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await poller.poll_once()
    assert store.stored.next_link == LINK  # the cursor stays: the page is read again
    assert uuids[-1] in {e.event_uuid for e in outbox.events}  # the window after the refusal was still tried
    assert store.seen >= set(uuids) - refuse and "e005" not in store.seen  # the broker has the others: seen
    refuse.clear()
    outbox.events.clear()
    await poller.poll_once()
    assert [e.event_uuid for e in outbox.events] == ["e005"]  # only the refused one goes out again
    assert store.stored.next_link == NEXT


# ------------------------------------------------------------------ events beyond the brief's list (issue 9, item 6)


def _app_profile_event(uuid: str, token_id: str | None = None, **kw) -> dict:
    raw = membership_event(uuid, "update", token_id=token_id, **kw)
    raw["eventType"] = "directory.app_user_profile.update"
    return raw


async def test_restore_primary_email_and_app_user_profile_events_are_published():
    poller, source, _, outbox = await started(assignments={(JIRA, "00u1xxxxxxxxxxxxxxxx")})
    source.pages[LINK] = ([membership_event("r1", "restore"), user_event("p1", "account.update_primary_email"),
                           _app_profile_event("d1"), _app_profile_event("d2", app_id="0oa9otherxxxxxxxxxxx")], NEXT)
    await poller.poll_once()
    assert [e.event_uuid for e in outbox.events] == ["r1", "p1", "d1"]


async def test_an_app_user_profile_event_without_app_and_user_is_not_ours_and_not_malformed():
    """Its targets are not documented: one that names no configured app and user is left alone, never a dead
    letter (Okta may write it for other apps' app users)."""
    poller, source, store, outbox = await started()
    bare = _app_profile_event("d1")
    bare["target"] = [t for t in bare["target"] if t["type"] == "AppUser"]
    source.pages[LINK] = ([bare], NEXT)
    await poller.poll_once()
    assert outbox.events == [] and outbox.dead == [] and store.stored.next_link == NEXT


async def test_own_token_app_user_profile_events_are_ignored_too():
    """The bridge's write-back may be logged as either app-user profile event: both carry its token id."""
    poller, source, _, outbox = await started()
    source.pages[LINK] = ([_app_profile_event("own", token_id=OWN_TOKEN), _app_profile_event("admin")], NEXT)
    await poller.poll_once()
    assert [e.event_uuid for e in outbox.events] == ["admin"]


# ------------------------------------------------------------------ POLLER_START_FROM


@pytest.mark.parametrize(("given", "since"), [
    ("2026-01-01T10:00:00+02:00", "2026-01-01T08:00:00.000Z"),
    ("2026-01-01T10:00:00-05:30", "2026-01-01T15:30:00.000Z"),
    ("2026-01-01T10:00:00Z", "2026-01-01T10:00:00.000Z"),
    ("2026-01-01T10:00:00", "2026-01-01T10:00:00.000Z"),  # no offset: UTC
])
def test_start_from_with_an_offset_polls_from_that_instant_in_utc(monkeypatch, given, since):
    from urllib.parse import parse_qs, urlsplit

    from okta_bridge.okta_client import OktaClient
    from queue_poller.adapters.okta_log import OktaLogSource
    from queue_poller.main import PollerSettings

    monkeypatch.setenv("POLLER_START_FROM", given)
    start = PollerSettings().start_from
    assert start is not None and start.utcoffset() == timedelta(0)
    link = OktaLogSource(OktaClient(ORG, "t"), 100).polling_link(start)
    assert parse_qs(urlsplit(link).query)["since"] == [since]
    direct = OktaLogSource(OktaClient(ORG, "t"), 100).polling_link(datetime.fromisoformat(given))
    assert parse_qs(urlsplit(direct).query)["since"] == [since], "the source converts an aware time itself too"


# ------------------------------------------------------------------ bad input from the System Log


class RecordingPublisher:
    """The broker side of ``BrokerOutbox``: every publish, with its exchange and routing key."""

    def __init__(self) -> None:
        self.sent: list[tuple[object, str, str]] = []

    async def publish(self, body, *, exchange: str, routing_key: str, **_kw) -> None:
        self.sent.append((body, exchange, routing_key))


@pytest.mark.parametrize("uuid", [123, {"id": "x"}, ["e0"], 1.5, True])
async def test_an_event_whose_uuid_is_not_a_string_is_set_aside_alone_and_the_cursor_moves_on(uuid):
    """It once made the dead letter's audit record fail: the page failed, the cursor never moved, and every retry
    added another dead letter."""
    from okta_bridge.audit import AuditPublisher
    from okta_bridge.contracts import AuditBatch, AuditStep, OktaEventReceived
    from queue_poller.adapters.outbox import BrokerOutbox

    poller, source, store, _ = await started()
    publisher = RecordingPublisher()
    poller.outbox = BrokerOutbox(publisher, AuditPublisher(publisher, "queue-poller", ORG), ORG)
    bad = {**membership_event("ignored"), "uuid": uuid}
    source.pages[LINK] = ([bad, membership_event("ok")], NEXT)
    await poller.poll_once()
    assert store.stored.next_link == NEXT
    dead = [(b, k) for b, x, k in publisher.sent if k == "queue-poller.malformed"]
    assert len(dead) == 1
    assert [b.event_uuid for b, _, _ in publisher.sent if isinstance(b, OktaEventReceived)] == ["ok"]
    records = [r for b, _, _ in publisher.sent if isinstance(b, AuditBatch) for r in b.records]
    [dead_record] = [r for r in records if r.step is AuditStep.DEAD_LETTERED]
    assert dead_record.event_uuid is None and "uuid is not a string" in dead_record.detail
    source.pages[NEXT] = ([], NEXT)
    await poller.poll_once()
    assert len([k for _, _, k in publisher.sent if k == "queue-poller.malformed"]) == 1, "one record, not one a poll"


@pytest.mark.parametrize(("body", "kind"), [({"errorCode": "E0000009"}, "a JSON object"), (None, "empty"),
                                            ("events", "a JSON str")])
async def test_a_system_log_page_that_is_not_a_list_is_a_clear_error_and_the_cursor_stays(body, kind):
    import httpx

    from okta_bridge.okta_client import OktaBadAnswerError, OktaClient
    from queue_poller.adapters.okta_log import OktaLogSource

    answers = [httpx.Response(200, json=body, headers={"Link": f'<{NEXT}>; rel="next"'}) if body is not None
               else httpx.Response(200, headers={"Link": f'<{NEXT}>; rel="next"'}),
               httpx.Response(200, json=[membership_event("e1")], headers={"Link": f'<{NEXT}>; rel="next"'})]
    fetched: list[str] = []

    def okta(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return answers.pop(0)

    poller, _, store, outbox = await started()
    poller.source = OktaLogSource(OktaClient(ORG, "t", http=httpx.AsyncClient(transport=httpx.MockTransport(okta))),
                                  100)
    saves = len(store.saved)
    with pytest.raises(OktaBadAnswerError, match=f"page is {kind}, not a list of events"):
        await poller.poll_once()
    assert len(store.saved) == saves and store.stored.next_link == LINK and outbox.dead == []
    await poller.poll_once()  # the same page read again: nothing skipped
    assert fetched == [LINK, LINK] and [e.event_uuid for e in outbox.events] == ["e1"]
    assert store.stored.next_link == NEXT


# ------------------------------------------------------------------ the event-type filter and the cadence


def test_the_polling_link_asks_only_for_the_event_types_the_bridge_handles():
    from urllib.parse import parse_qs, urlsplit

    from okta_bridge.events import HANDLED_EVENT_TYPES
    from okta_bridge.okta_client import OktaClient
    from queue_poller.adapters.okta_log import OktaLogSource

    source = OktaLogSource(OktaClient(ORG, "t"), 1000)
    link = source.polling_link(START)
    [asked] = parse_qs(urlsplit(link).query)["filter"]
    clauses = asked.split(" or ")
    assert clauses == sorted(clauses) and len(clauses) == len(HANDLED_EVENT_TYPES)
    assert tuple(c.removeprefix('eventType eq "').removesuffix('"') for c in clauses) == HANDLED_EVENT_TYPES
    for handled in ("directory.app_user_profile.update", "application.user_membership.restore",
                    "user.account.update_primary_email", "group.user_membership.add"):
        assert f'eventType eq "{handled}"' in clauses, handled
    assert "user.session.start" not in asked
    assert source.asks_as_configured(link) and source.asks_as_configured(f"{ORG}/api/v1/logs?after=x&filter={asked}")
    assert not source.asks_as_configured(LINK), "a link without the filter (a bridge from before it)"
    older = OktaLogSource(OktaClient(ORG, "t"), 1000, 'eventType eq "application.user_membership.add"')
    assert not source.asks_as_configured(older.polling_link(START))


async def test_a_stored_link_with_another_filter_is_replaced_from_the_newest_published_read():
    newest = recent() - timedelta(minutes=30)
    poller, source, store, outbox = make(CursorState(LINK, recent(), [JIRA, WIKI], resume_from=newest))
    source.filter = 'eventType eq "application.user_membership.add" or eventType eq "user.lifecycle.suspend"'
    await poller.start()
    assert source.fresh_links == [newest - FRESH_LINK_MARGIN]
    assert store.stored.next_link == source.polling_link(newest - FRESH_LINK_MARGIN) != LINK
    assert store.stored.resume_from == newest
    assert outbox.syncs == [], "the uuids cover the overlap: no full sync"


async def test_a_link_stored_before_the_filter_existed_resumes_from_the_last_successful_poll():
    last = recent()
    poller, source, store, outbox = make(CursorState(LINK, last, [JIRA, WIKI]))  # no resume_from: an older bridge
    source.filter = 'eventType eq "application.user_membership.add"'
    await poller.start()
    assert source.fresh_links == [last - FRESH_LINK_MARGIN] and outbox.syncs == []
    assert source.asks_as_configured(store.stored.next_link)


async def test_a_stored_link_with_the_same_filter_is_followed_as_it_is():
    source_filter = 'eventType eq "application.user_membership.add"'
    link = f"{ORG}/api/v1/logs?after=abc&sortOrder=ASCENDING&filter=eventType+eq+%22application.user_membership.add%22"
    poller, source, store, _ = make(CursorState(link, recent(), [JIRA, WIKI]))
    source.filter = source_filter
    await poller.start()
    assert source.fresh_links == [] and store.stored.next_link == link


async def test_resume_from_is_the_newest_published_of_a_full_page_and_okta_now_after_a_short_one():
    poller, source, store, _ = await started(page_limit=2)
    early, late = membership_event("e1"), membership_event("e2")
    early["published"], late["published"] = "2026-03-01T10:00:05.000Z", "2026-03-01T10:00:01.000Z"
    source.pages[LINK] = ([early, late], NEXT)  # full: out of published order, the newest counts
    assert await poller.poll_once() is True
    assert store.stored.resume_from == datetime(2026, 3, 1, 10, 0, 5, tzinfo=UTC)
    source.pages[NEXT] = ([], NEXT)  # short: the log's end was reached at Okta's now
    before = datetime.now(UTC)
    await poller.poll_once()
    assert before <= store.stored.resume_from <= datetime.now(UTC)


async def test_pages_of_events_that_mean_no_work_let_the_cadence_slow_down():
    """Sign-in traffic and other apps' events once kept the poller at its fastest."""
    poller, source, _, _ = await started(assignments={(JIRA, "00u1xxxxxxxxxxxxxxxx")})
    noise = [membership_event(f"o{i}", app_id="0oa9otherxxxxxxxxxxx") for i in range(5)] + [user_event("u9", user_id="00u9xxxxxxxxxxxxxxxx")]
    source.pages[LINK] = (noise, LINK)
    assert await poller.poll_once() is False
    assert poller.next_interval(0.5, False) == 1.0 and poller.next_interval(4.0, False) == 5.0
    source.pages[LINK] = ([membership_event("e1")], LINK)
    await poller.poll_once()
    assert poller.next_interval(4.0, False) == 0.5, "relevant events keep it quick"
    assert poller.next_interval(4.0, True) == 0.0, "a full page: again at once"


async def test_an_upgrade_to_another_filter_against_the_simulator_loses_nothing_and_publishes_nothing_twice():
    """The old bridge asked for membership events only; the upgraded one asks for every type it handles. Events of
    the gap (after the old cursor, before the upgrade) all come through once: without the migration the old link,
    which carries the old filter, would never show the suspension."""
    import httpx
    from fastapi.testclient import TestClient

    from okta_bridge.okta_client import OktaClient
    from okta_simulator import Settings, create_app
    from queue_poller.adapters.okta_log import OktaLogSource

    now = [1_800_000_000.0]
    server = "https://subdomain.okta.com"
    sim = TestClient(create_app(Settings(plan="workforce", token_share=0.5, tokens={"tok": "00Tsim0000000000000a"},
                                         org_url=server), lambda: now[0]))
    admin = lambda path, body: sim.post(f"/_admin{path}", json=body).json()  # noqa: E731

    def okta(request: httpx.Request) -> httpx.Response:  # the OktaClient's requests, answered by the simulator
        r = sim.request(request.method, request.url.raw_path.decode(), headers={"Authorization": "SSWS tok"})
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    def source(log_filter: str | None = None) -> OktaLogSource:
        client = OktaClient(server, "tok", http=httpx.AsyncClient(transport=httpx.MockTransport(okta)))
        return OktaLogSource(client, 100, log_filter)

    app = admin("/apps", {"label": "Jira"})["id"]
    ann, bob, cy = (admin("/users", {"profile": {"login": f"{n}@example.com"}})["id"] for n in ("ann", "bob", "cy"))
    admin(f"/apps/{app}/users", {"userId": ann})
    admin(f"/apps/{app}/users", {"userId": bob})
    store = FakePollerState(None, {(app, ann), (app, bob), (app, cy)})
    cfg = PollerConfig(org=server, app_ids=(app,), own_token_id=None, start_from=None,
                       max_cursor_age=timedelta(days=7), page_limit=100, idle_interval_s=5.0, min_interval_s=0.5)
    old_outbox = FakeOutbox()
    old = Poller(cfg, source('eventType eq "application.user_membership.add"'), store, old_outbox)
    await old.start()
    await old.poll_once()
    now[0] += 100
    dan = admin("/users", {"profile": {"login": "dan@example.com"}})["id"]
    admin(f"/apps/{app}/users", {"userId": dan})  # read by the old bridge, and again in the upgrade's overlap
    now[0] += 20
    await old.poll_once()
    assert [e.event_type for e in old_outbox.events] == ["application.user_membership.add"] * 3
    assert store.stored.resume_from is not None

    now[0] += 600  # the bridge is upgraded; meanwhile in Okta:
    admin(f"/users/{ann}/lifecycle/suspend", {})
    admin(f"/apps/{app}/users", {"userId": cy})
    now[0] += 30
    new_outbox = FakeOutbox()
    new = Poller(cfg, source(), store, new_outbox)
    await new.start()
    assert new.source.asks_as_configured(store.stored.next_link)
    read_again: list[str] = []
    fetch = new.source.fetch

    async def recording(link: str):
        events, nxt = await fetch(link)
        read_again.extend(e["uuid"] for e in events)
        return events, nxt

    new.source.fetch = recording  # type: ignore[method-assign]
    for _ in range(3):
        await new.poll_once()
    assert old_outbox.events[-1].event_uuid in read_again, "the overlap is read again (and deduplicated)"
    types = sorted(e.event_type for e in new_outbox.events)
    assert types == ["application.user_membership.add", "user.lifecycle.suspend"]
    uuids = [e.event_uuid for e in [*old_outbox.events, *new_outbox.events]]
    assert len(uuids) == len(set(uuids)) == 5, "nothing lost, nothing published twice"
