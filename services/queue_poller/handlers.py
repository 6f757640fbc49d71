"""The poller's loop over its ports: follow the System Log's ``next`` link forever, publish each relevant event once.

Order per page: read -> publish every unseen relevant event (confirmed) -> remember their uuids -> store the next
link. A crash anywhere before the link is stored re-reads the page; the uuids make the re-read publish nothing twice,
and the translator plans from state, so an event published twice in the gap is still harmless.

The link asks Okta only for the event types the bridge handles (its ``filter``, which Okta keeps in every ``next``
link). A stored link with another filter (a bridge upgraded with new event types, or from before the filter) is
replaced at start by a polling link from the newest ``published`` read (``resume_from``) less a margin; the uuids
make the overlap publish nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from opentelemetry import trace

from okta_bridge.bus import publish_together
from okta_bridge.contracts import OktaEventReceived, SyncReason
from okta_bridge.events import (APP_PROFILE_EVENTS, APP_USER_EVENTS, GROUP_EVENTS, USER_EVENTS, MalformedEvent,
                                group_id_of, parse_event, target_id, user_id_of)
from okta_bridge.okta_client import OktaCursorRejectedError
from okta_bridge.metrics import EVENTS_POLLED, POLLER
from okta_bridge.telemetry import DEFERRED, keep_trace
from queue_poller.ports import CursorState, LeadershipLost, LogSource, Outbox, StateStore

log = logging.getLogger(__name__)
FRESH_LINK_MARGIN = timedelta(seconds=60)
MAX_BACKOFF_S = 15.0  # a failed poll (broker, database or Okta away) is tried again at least this often
tracer = trace.get_tracer("queue_poller")


@dataclass(frozen=True)
class PollerConfig:
    org: str
    app_ids: tuple[str, ...]
    own_token_id: str | None
    start_from: datetime | None
    max_cursor_age: timedelta
    page_limit: int
    idle_interval_s: float
    min_interval_s: float
    group_names: frozenset[str] = frozenset()  # push_groups entries that are names, for group.lifecycle.create
    own_client_id: str | None = None  # the OAuth 2.0 service app's client id: the actor of its writes


@dataclass(frozen=True)
class PageOutcome:
    """What publishing one page did."""

    relevant: int  # events of the page that mean work
    newest: datetime | None  # the newest ``published`` of its readable events
    published: int  # messages that went out (events published, malformed events dead-lettered)


@dataclass(frozen=True)
class _Malformed:
    """A log event the bridge could not read."""

    raw: object
    reason: str
    uuid: str | None


class Poller:
    def __init__(self, cfg: PollerConfig, source: LogSource, store: StateStore, outbox: Outbox) -> None:
        self.cfg, self.source, self.store, self.outbox = cfg, source, store, outbox
        self.state = CursorState(None, None, [])
        self.last_page_size = 0
        self.last_relevant = 0  # relevant events on the last page: what keeps the cadence quick

    async def start(self) -> None:
        """First start, new apps and an expired cursor each bring apps in line by a full sync."""
        stored = await self.store.load()
        now = datetime.now(UTC)
        apps = list(self.cfg.app_ids)
        if stored is None or stored.next_link is None:
            await self._sync(apps, SyncReason.INITIAL)
            self.state = CursorState(self.source.polling_link(self.cfg.start_from or self._fresh_since()), None, apps)
        elif stored.last_success_at and now - stored.last_success_at > self.cfg.max_cursor_age:
            log.warning("last successful poll %s is older than %s: cursor expired, full sync", stored.last_success_at,
                        self.cfg.max_cursor_age)
            await self._sync(apps, SyncReason.CURSOR_EXPIRED)
            self.state = CursorState(self.source.polling_link(self._fresh_since()), None, apps)
        else:
            new = [a for a in apps if a not in stored.known_apps]
            await self._sync(new, SyncReason.NEW_APP)
            self.state = CursorState(self._migrated(stored), stored.last_success_at, apps, stored.resume_from)
        await self.store.save(self.state)
        for app_id in apps:  # push_groups may have changed: resolve names, push, unlink what was dropped
            await self.outbox.request_group_sync(app_id, SyncReason.STARTUP)

    def _migrated(self, stored: CursorState) -> str:
        """The stored link, or, when it asks for another filter than this bridge's, a polling link with this
        bridge's filter from where the old one had read to: the newest ``published`` read (or, stored by a bridge
        that did not record it, the last successful poll), less the margin. Events of the overlap come again and
        the uuids publish them once; none after the old cursor is lost."""
        assert stored.next_link is not None
        if self.source.asks_as_configured(stored.next_link):
            return stored.next_link
        since = stored.resume_from or stored.last_success_at
        since = since - FRESH_LINK_MARGIN if since is not None else self._fresh_since()
        log.info("the stored System Log link asks for another filter: polling afresh from %s (with this bridge's "
                 "filter; the overlap is deduplicated by uuid)", since.isoformat())
        return self.source.polling_link(since)

    def _fresh_since(self) -> datetime:
        """Polling afresh: from Okta's clock (the last answer's Date header), a minute back. Events of that minute
        may come twice, which is harmless; none between the full sync and the new cursor is lost."""
        return self.source.server_now() - FRESH_LINK_MARGIN

    async def run(self, stop: asyncio.Event) -> None:
        """Adaptive: again at once after a full page, soon after a page with events, else back off towards the idle
        interval. A failed poll
        (Okta 429/5xx, broker or database down) moved no cursor: it is logged and tried again with backoff."""
        interval = self.cfg.min_interval_s
        while not stop.is_set():
            try:
                interval = self.next_interval(interval, await self.poll_once())
            except LeadershipLost:
                raise
            except Exception as exc:  # noqa: BLE001 - logged, retried; nothing was acknowledged
                # Okta said when (429 / rate-limit reset): wait that long; else back off, at most MAX_BACKOFF_S
                told = getattr(exc, "retry_after_s", None)
                interval = min(max(told, 1.0), 65.0) if told else min(max(interval * 2, 1.0), MAX_BACKOFF_S)
                log.warning("poll failed (%s: %s); next try in %.0fs", type(exc).__name__, exc, interval)
            if interval:
                try:
                    await asyncio.wait_for(stop.wait(), interval)
                except TimeoutError:
                    pass

    def next_interval(self, interval: float, full: bool) -> float:
        """At once after a full page; quick while pages bring relevant events (work is flowing); else twice the wait,
        up to the idle interval. Events that mean no work (another app's, a user with no assignment) do not keep
        the poller quick: that would spend the logs bucket the org's SIEM shares."""
        if full:
            return 0.0
        if self.last_relevant:
            return self.cfg.min_interval_s
        return min(max(interval * 2, self.cfg.min_interval_s), self.cfg.idle_interval_s)

    async def poll_once(self) -> bool:
        """One page; returns True when the page was full (poll again at once). Its trace is kept only when it
        published something (events, a dead letter, sync requests) or failed: an idle poll leaves no trace
        (:class:`okta_bridge.telemetry.DeferredRootProcessor`)."""
        with tracer.start_as_current_span("okta poll System Log", attributes={DEFERRED: True}) as span:
            try:
                events, next_link = await self.source.fetch(self.state.next_link or "")
            except OktaCursorRejectedError as exc:
                log.warning("Okta rejected the stored cursor (%s): full sync of every app, polling afresh", exc)
                await self._sync(list(self.cfg.app_ids), SyncReason.CURSOR_REJECTED)
                self.state = CursorState(self.source.polling_link(self._fresh_since()), None, list(self.cfg.app_ids),
                                         self.state.resume_from)
                await self.store.save(self.state)
                keep_trace(span, True)
                return True
            span.set_attribute("okta.log.page_size", len(events))
            self.last_page_size = len(events)
            full = len(events) >= self.cfg.page_limit
            async with self.outbox.batch():  # the page's audit records go out as one message
                outcome = await self._publish_page(events, span.get_span_context())
            self.last_relevant, newest = outcome.relevant, outcome.newest
            span.set_attribute("okta.log.relevant", outcome.relevant)
            span.set_attribute("okta.log.published", outcome.published)
            keep_trace(span, outcome.published > 0)
            read_to = [t for t in (newest, None if full else self.source.server_now(), self.state.resume_from) if t]
            self.state.resume_from = max(read_to) if read_to else None  # a page short of full reached the log's end
            self.state.next_link = next_link or self.state.next_link
            self.state.last_success_at = datetime.now(UTC)
            await self.store.save(self.state)
            POLLER.polled()
            if newest is not None:
                POLLER.saw_event(newest.timestamp())
            return full

    async def _publish_page(self, raw_events: list, poll_ctx) -> PageOutcome:
        """Publishes a page's unseen relevant events and dead-letters its unseen malformed ones."""
        parsed: list[OktaEventReceived] = []
        malformed: list[_Malformed] = []
        dead = 0
        for raw in raw_events:
            try:
                parsed.append(parse_event(self.cfg.org, raw))
            except MalformedEvent as exc:
                uuid = raw.get("uuid") if isinstance(raw, dict) and isinstance(raw.get("uuid"), str) else None
                malformed.append(_Malformed(raw, str(exc), uuid))
        if malformed:  # dead-lettered once, even when a crash makes the page be read again
            unseen_bad = await self.store.unseen([m.uuid for m in malformed if m.uuid])
            for m in malformed:
                if m.uuid is None or m.uuid in unseen_bad:
                    log.warning("malformed log event dead-lettered: %s", m.reason)
                    await self.outbox.dead_letter(m.raw, m.reason)
                    dead += 1
            await self.store.mark_seen(sorted(unseen_bad))
        relevant = await self._relevant(parsed)
        unseen = await self.store.unseen([e.event_uuid for e in relevant])
        todo = list({e.event_uuid: e for e in relevant if e.event_uuid in unseen}.values())
        # the translator plans from state, so the events' order is free: confirms awaited together. When one is
        # refused, those the broker confirmed are marked seen before the failure is raised (the cursor stays, the
        # page is read again, and only the others go out again)
        confirmed: list[OktaEventReceived] = []
        try:
            await publish_together(todo, lambda e: self.outbox.publish_event(e, poll_ctx), confirmed=confirmed)
        except Exception:  # a cancellation marks nothing: the page is read again, duplicates are harmless
            if confirmed:
                await self.store.mark_seen([e.event_uuid for e in confirmed])
            raise
        await self.store.mark_seen([e.event_uuid for e in todo])
        for e in todo:  # handled event types only: a bounded label
            EVENTS_POLLED.labels(e.event_type).inc()
        return PageOutcome(relevant=len(relevant), newest=max((_utc(e.published) for e in parsed), default=None),
                           published=len(todo) + dead)

    async def _relevant(self, events: list[OktaEventReceived]) -> list[OktaEventReceived]:
        apps = set(self.cfg.app_ids)
        out: list[OktaEventReceived] = []
        user_events = [e for e in events if e.event_type in USER_EVENTS]
        assigned = await self.store.users_with_assignments(
            list({user_id_of(e) for e in user_events}), list(apps)) if user_events else set()
        pushed = await self.store.pushed_group_ids() if any(e.event_type in GROUP_EVENTS for e in events) else set()
        for e in events:
            if e.event_type == "group.lifecycle.create":
                target = next(t for t in e.targets if t.type == "UserGroup")
                if target.display_name in self.cfg.group_names:
                    out.append(e)
            elif e.event_type in GROUP_EVENTS and group_id_of(e) in pushed:
                out.append(e)
            elif e.event_type in APP_USER_EVENTS and target_id(e, "AppInstance") in apps and user_id_of(e):
                if self._own_write(e):
                    log.debug("event %s was caused by our own token: ignored", e.event_uuid)
                    continue
                out.append(e)
            elif e.event_type in USER_EVENTS and user_id_of(e) in assigned:
                out.append(e)
        return out

    def _own_write(self, event: OktaEventReceived) -> bool:
        """Only app-user profile updates are written by the bridge (accept_user_updates); an assignment made with
        the same token (or service app) by other automation is a real change and is followed. Ours: the SSWS token's
        id in ``requestApiTokenId``, or the OAuth 2.0 service app as the event's actor."""
        if event.event_type not in APP_PROFILE_EVENTS:
            return False
        by_token = bool(self.cfg.own_token_id) and event.request_api_token_id == self.cfg.own_token_id
        by_app = bool(self.cfg.own_client_id) and event.actor_id == self.cfg.own_client_id  # OAuth service app
        return by_token or by_app

    async def _sync(self, app_ids: list[str], reason: SyncReason) -> None:
        for app_id in app_ids:
            await self.outbox.request_sync(app_id, reason)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
