"""Translator handlers: each message means "look at (app, user) again"; plans come from the state read now.

Membership and ``user.*`` events come in batches (:meth:`Translator.handle_events`): membership events name their key
and keep the assignment table (org, app, user, app username) current; ``user.*`` events are routed to the user's
apps through that table; every event of one key in a batch makes one plan (:mod:`translator.planning`). Full syncs
re-list an app's assignments, 500 a call with each user embedded, and plan each page as a batch. Group events and
write-backs are handled one at a time.

``appProfile.*`` values come with the assignment row (listings, the bridge's own write-back), so every plan carries
them. An app-user profile event (``application.user_membership.update``, ``directory.app_user_profile.update``; the
poller drops those the bridge caused) refreshes them with one app-user read per key, in the apps bucket, and only for
apps that map ``appProfile.*``; no other event reads the app user.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from opentelemetry import context as otel_context
from opentelemetry import trace

from okta_bridge.audit import Audit
from okta_bridge.bus import publish_together
from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import (AppSyncRequested, AuditStep, OktaEventReceived, Reason, TargetValuesObserved)
from okta_bridge.okta_client import OktaNotFoundError, OktaTransientError
from okta_bridge.events import (APP_PROFILE_EVENTS, APP_USER_EVENTS, GROUP_EVENTS, USER_EVENTS, target_id,
                                user_id_of)
from okta_bridge.deadletters import is_look_again
from okta_bridge.stores.groups import micros
from okta_bridge.telemetry import ATTR, span_of
from translator.groups import GroupPlanner
from translator.guard import DeactivationGuard
from translator.planning import KeyResult, KeyWork, Planner, Source, plan_span_attributes
from translator.ports import PlanOutbox, WritebackStore

__all__ = ["EventResult", "Translator"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer("translator")

# Okta's clock is known from Date headers, to the second: a listing counts as of two seconds before it was asked for
LISTING_MARGIN_US = 2_000_000


@dataclass
class EventResult:
    """What became of one event message: None when all its keys were planned (or need nothing), else the failure
    the outcome policy settles (the whole message is tried again: planning is level-triggered), with the key it
    failed for (its retry's audit record names the user and the app)."""
    failure: Exception | None = None
    app_id: str | None = None
    user_id: str | None = None


@dataclass
class Translator:
    org: str
    apps: dict[str, AppConnector]
    planner: Planner
    outbox: PlanOutbox
    audit: Audit
    writebacks: WritebackStore | None = None
    groups: GroupPlanner | None = None
    monotonic: Callable[[], float] = time.monotonic  # only to bound Okta's clock around a page
    guard: DeactivationGuard | None = None  # holds an app's deactivations past its threshold (translator.guard)

    @property
    def store(self):
        return self.planner.store

    @property
    def okta(self):
        return self.planner.okta

    # --- a batch of events -------------------------------------------------------------------------------------------
    async def handle_events(self, events: list[tuple[Source, OktaEventReceived]]) -> dict[Any, EventResult]:
        """One plan per key of the batch; returns the result of each source (by its handle)."""
        results = {source.handle: EventResult() for source, _ in events}
        works: dict[tuple[str, str], KeyWork] = {}
        by_source: dict[Any, list[KeyWork]] = {}
        user_events = [(s, e) for s, e in events if e.event_type in USER_EVENTS and user_id_of(e)]
        rows = await self.store.for_users({user_id_of(e) for _, e in user_events}, self.apps) \
            if user_events else {}
        joining: dict[str, set[str]] = {}  # user -> apps a membership event of this batch names
        for _, event in events:
            if event.event_type in APP_USER_EVENTS and target_id(event, "AppInstance") in self.apps:
                joining.setdefault(user_id_of(event), set()).add(target_id(event, "AppInstance"))
        profile_reads: set[tuple[str, str]] = set()  # keys whose app-user profile changed: read it again
        assignment_reads: set[tuple[str, str]] = set()  # look-again keys: the app-user read says the assignment too
        for source, event in events:
            keys = self._keys_of(source, event, rows, joining)
            for app_id, user_id, change in keys:
                work = works.setdefault((app_id, user_id), KeyWork(app_id, user_id))
                work.sources.append(source)
                if event.event_type in USER_EVENTS:
                    work.by_id = True
                if event.event_type in APP_PROFILE_EVENTS and (_maps_app_profile(self.apps[app_id])
                                                               or is_look_again(event)):
                    profile_reads.add((app_id, user_id))
                if is_look_again(event):
                    assignment_reads.add((app_id, user_id))
                if change:
                    work.fold(**change)
                by_source.setdefault(source.handle, []).append(work)
            if not keys:
                await self._skip_event(source, event, rows)
        unread = await self._read_app_profiles([works[k] for k in sorted(profile_reads)], assignment_reads)
        for result in unread:
            del works[result.work.key]
        await self._publish_all(unread)
        for result in unread:
            for source in result.work.sources:
                results[source.handle] = EventResult(result.failure, result.work.app_id, result.work.user_id)
        try:
            planned = await self._plan(list(works.values()))
        except Exception as exc:  # noqa: BLE001 - Okta or the database: every message of the batch is tried again
            for source, _ in events:  # its retry's audit record names a key of the message: user and app
                work = next(iter(by_source.get(source.handle, ())), None)
                results[source.handle] = EventResult(exc, work and work.app_id, work and work.user_id)
            return results
        await self._publish_all(planned)
        for result in planned:
            if result.failure is not None:
                for source in result.work.sources:
                    results[source.handle] = EventResult(result.failure, result.work.app_id, result.work.user_id)
        return results

    async def _read_app_profiles(self, works: list[KeyWork],
                                 assignment: set[tuple[str, str]] = frozenset()) -> list[KeyResult]:
        """One ``GET /api/v1/apps/{appId}/users/{userId}`` per key (the apps bucket; the client keeps to its
        rate-limit headers): its profile goes into the key's row with Okta's time before the read, so a listing
        asked for later wins and one asked for earlier does not. A key Okta no longer assigns (404) keeps what is
        known: its removal arrives as its own event. A key whose read fails is not planned; its messages are tried
        again (returned as failures).

        Keys in ``assignment`` (an operator's "look again": provision on demand, a dead-letter replay, a guard
        release) take the assignment from the read too, as of the same time: assigned with the app username, or
        not assigned on a 404, so a key the bridge never saw an event for is planned from Okta's state now."""
        async def one(work: KeyWork) -> KeyResult | None:
            as_of = micros(self.okta.server_now()) - LISTING_MARGIN_US
            try:
                with tracer.start_as_current_span("okta read app user", context=work.context) as span:
                    span.set_attribute(ATTR.APP_ID, work.app_id)
                    span.set_attribute(ATTR.USER_ID, work.user_id)
                    app_user = await self.okta.get_app_user(work.app_id, work.user_id)
            except OktaNotFoundError:
                if work.key in assignment:
                    work.fold(assigned=False, as_of=as_of)
                return None
            except Exception as exc:  # noqa: BLE001 - settled by the outcome policy (retried, or dead-lettered)
                return KeyResult(work, getattr(exc, "code", Reason.INTERNAL), str(exc), failure=exc)
            profile = app_user.get("profile") if isinstance(app_user, dict) else None
            if not isinstance(profile, dict):
                why = f"Okta answered app user {work.app_id}/{work.user_id} without a profile; read again later"
                return KeyResult(work, Reason.OKTA_TRANSIENT, why, failure=OktaTransientError(why))
            if work.key in assignment:
                work.fold(assigned=True, app_username=(app_user.get("credentials") or {}).get("userName"),
                          as_of=as_of)
            work.fold(app_profile=profile, as_of=as_of)
            return None

        return [r for r in await asyncio.gather(*(one(w) for w in works)) if r is not None]

    def _keys_of(self, source: Source, event: OktaEventReceived, rows,
                 joining: dict[str, set[str]]) -> list[tuple[str, str, dict[str, Any]]]:
        user_id = user_id_of(event)
        if user_id is None:
            return []
        if event.event_type in APP_USER_EVENTS:
            app_id = target_id(event, "AppInstance")
            return [(app_id, user_id, _membership_change(event))] if app_id in self.apps else []
        if event.event_type in USER_EVENTS:  # its apps, and those the user joins in this batch: read by id
            apps = {row.app_id for row in rows.get(user_id, [])} | joining.get(user_id, set())
            return [(app_id, user_id, {}) for app_id in sorted(apps)]
        return []

    async def _skip_event(self, source: Source, event: OktaEventReceived, rows) -> None:
        user_id = user_id_of(event)
        if event.event_type in APP_USER_EVENTS:
            app_id, why = target_id(event, "AppInstance"), "app is not in the connectors file"
        elif event.event_type in USER_EVENTS:
            app_id, why = None, "user is assigned to no configured app"
        else:
            app_id, why = None, f"event type {event.event_type} needs no work"
        await self.audit.record(AuditStep.SKIPPED, reason=Reason.NOT_CONFIGURED, event_uuid=event.event_uuid,
                                event_type=event.event_type, app_id=app_id, okta_user_id=user_id, detail=why,
                                span=span_of(source.context))

    async def handle_event(self, event: OktaEventReceived) -> EventResult:
        """One event on its own (group events; tests)."""
        if event.event_type in GROUP_EVENTS and self.groups is not None:
            await self.groups.handle_event(event)
            return EventResult()
        source = Source(None, event.event_type, event.event_uuid, otel_context.get_current())
        return (await self.handle_events([(source, event)]))[None]

    async def _plan(self, works: list[KeyWork]) -> list[KeyResult]:
        results = await self.planner.plan(works)
        if self.guard is not None:
            await self.guard.apply(results)
        return results

    # --- publishing --------------------------------------------------------------------------------------------------
    async def _publish_all(self, results: list[KeyResult]) -> None:
        """A batch's plans go out together (:func:`okta_bridge.bus.publish_together`): they are of different keys
        (one plan per key per batch), so their order is free. A failure after all were tried is raised: the batch is
        planned again (new versions, and the dispatcher's version check drops what is older)."""
        await publish_together(results, self._publish)

    async def _publish(self, result: KeyResult) -> None:
        """The plan goes out in its first source's trace; every source keeps its own audit record."""
        work, primary = result.work, (result.work.sources[0] if result.work.sources else None)
        context = primary.context if primary else None
        with tracer.start_as_current_span("plan", context=context,
                                          links=[trace.Link(_span_context(s.context)) for s in work.sources[1:8]
                                                 if _span_context(s.context).is_valid]) as span:
            plan_span_attributes(span, result)
            if result.plan is not None:
                await self.outbox.publish(result.plan, self.apps[work.app_id].pool)
        if result.failure is not None:
            return  # the message is settled by the outcome policy (retried or dead-lettered, and audited there)
        step = AuditStep.PLANNED if result.plan is not None else AuditStep.SKIPPED
        if result.reason is Reason.GUARD_HELD:
            step = AuditStep.HELD
        for source in work.sources or [Source(None, work.cause)]:
            await self.audit.record(step, reason=result.reason, detail=result.detail, event_uuid=source.event_uuid,
                                    event_type=source.cause, app_id=work.app_id, okta_user_id=work.user_id,
                                    plan_version=result.version, span=span_of(source.context))

    # --- full sync ---------------------------------------------------------------------------------------------------
    async def handle_sync(self, request: AppSyncRequested) -> int:
        """Full sync: list the app's assignments (ceil(n/500) calls) and plan every user, a page at a time; returns
        users looked at. A listed user is planned from the page itself when the page's ``lastUpdated`` is not older
        than what an earlier plan of the key was built from; else it is read again, like any plan."""
        app = self.apps.get(request.app_id)
        if app is None:
            await self.audit.record(AuditStep.SKIPPED, reason=Reason.NOT_CONFIGURED, app_id=request.app_id,
                                    detail="sync: app not configured")
            return 0
        planned, cause, started_as_of = 0, f"sync:{request.reason}", None
        with tracer.start_as_current_span("okta list app users") as listing:
            listing.set_attribute(ATTR.APP_ID, app.okta_app_id)
            source = Source(None, cause, context=otel_context.get_current())
            pages = aiter(self.okta.list_app_users(app.okta_app_id))
            while True:
                okta_before, asked = micros(self.okta.server_now()), self.monotonic()  # Okta's clock, for the rows
                try:
                    page = await anext(pages)
                except StopAsyncIteration:
                    break
                # Okta's clock is known from Date headers (to the second); before the first answer it is the local
                # clock, so the page's own Date, less the time the answer took, bounds it too: the earlier counts
                okta_after = micros(self.okta.server_now()) - int((self.monotonic() - asked) * 1_000_000)
                as_of = min(okta_before, okta_after) - LISTING_MARGIN_US
                started_as_of = started_as_of or as_of
                rows = [(u["id"], (u.get("credentials") or {}).get("userName")) for u in page]
                profiles = {u["id"]: u["profile"] for u in page if isinstance(u.get("profile"), dict)}
                await self.store.record_listing(app.okta_app_id, rows, request.sync_id, as_of, profiles)
                works = [KeyWork(app.okta_app_id, user_id, [source], listed=app_user,
                                 app_profile=app_user.get("profile"))
                         for app_user, (user_id, _) in zip(page, rows)]
                await self._plan_and_publish(works)
                planned += len(works)
            missing = [] if started_as_of is None else await self.store.unassign_missing(
                app.okta_app_id, request.sync_id, started_as_of)  # no page: nothing known
            await self._plan_and_publish([KeyWork(app.okta_app_id, u, [source]) for u in missing])
            planned += len(missing)
        return planned

    async def _plan_and_publish(self, works: list[KeyWork]) -> None:
        failures = []
        results = await self._plan(works)
        await self._publish_all(results)
        for result in results:
            if result.failure is not None:
                failures.append(result.failure)
        if failures:  # the sync message is retried (its next run takes new versions) or dead-lettered
            raise failures[0]

    # --- write-back --------------------------------------------------------------------------------------------------
    async def handle_writeback(self, observed: TargetValuesObserved) -> None:
        """``accept_user_updates``: the values the target answered differently go to the Okta app-user profile,
        only those that changed since the last write, all of one user's in one call (the apps bucket's budget is
        respected by the client). The log events these writes cause carry our token id and are not published."""
        app = self.apps.get(observed.app_id)
        if app is None or not app.accept_user_updates or self.writebacks is None:
            return
        values = {v.path: v.value for v in observed.values if v.path != "externalId"}
        changed = await self.writebacks.changed(observed.app_id, observed.okta_user_id, values)
        common = dict(event_uuid=observed.event_uuid, event_type="writeback", app_id=observed.app_id,
                      okta_user_id=observed.okta_user_id)
        if not changed:
            await self.audit.record(AuditStep.SKIPPED, reason=Reason.APPLIED, detail="write-back: nothing changed",
                                    **common)
            return
        await self.okta.update_app_user_profile(observed.app_id, observed.okta_user_id, changed)
        await self.writebacks.remember(observed.app_id, observed.okta_user_id, changed)
        # the log events of this write are ours and not read back: the known app-user profile takes the values now
        await self.store.merge_app_profile(observed.app_id, observed.okta_user_id, changed,
                                           micros(self.okta.server_now()))
        await self.audit.record(AuditStep.APPLIED, reason=Reason.APPLIED,
                                detail=f"wrote app-user profile: {', '.join(sorted(changed))}", **common)


def _maps_app_profile(app: AppConnector) -> bool:
    return any(source.startswith("appProfile.") for source in app.mappings.values())


def _span_context(ctx: otel_context.Context | None) -> trace.SpanContext:
    return trace.get_current_span(ctx).get_span_context() if ctx is not None else trace.INVALID_SPAN_CONTEXT


def _membership_change(event: OktaEventReceived) -> dict[str, Any]:
    """What a membership event says about the assignment; the app username is the AppUser's alternateId."""
    app_user = next((t for t in event.targets if t.type == "AppUser"), None)
    username = app_user.alternate_id if app_user else None
    as_of = micros(event.published)  # events can be processed out of order: the newest decides
    if event.event_type.endswith(".add"):
        return {"assigned": True, "app_username": username, "as_of": as_of}
    if event.event_type.endswith(".remove"):
        return {"assigned": False, "as_of": as_of}
    if event.event_type.endswith(".change_username") and username:
        return {"app_username": username, "as_of": as_of}
    return {}


