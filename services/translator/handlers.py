"""Translator handlers: each message means "look at (app, user) again"; the plan comes from the state read now.

Membership events keep the assignment table (org, app, user, app username) current; ``user.*`` events are routed
to apps through it; full syncs re-list an app's assignments, 500 a call, with each user embedded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from opentelemetry import context, trace

from okta_bridge.audit import Audit
from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import (AppSyncRequested, AuditStep, OktaEventReceived, ScimOperationPlanned,
                                   TargetValuesObserved)
from okta_bridge.events import GROUP_EVENTS, MEMBERSHIP_EVENTS, USER_EVENTS, target_id, user_id_of
from okta_bridge.stores.groups import micros
from okta_bridge.okta_client import OktaNotFoundError, OktaTransientError
from okta_bridge.telemetry import ATTR
from translator.groups import GroupPlanner
from translator.mapping import map_user
from translator.ports import AssignmentStore, ListingFence, OktaReader, PlanOutbox, Take, WritebackStore
from translator.state_table import decide

log = logging.getLogger(__name__)
tracer = trace.get_tracer("translator")

# The longest a plan may take from its version take to its check after the Okta read, on the database's clock
# (budget waits are at most about 65 s, a request times out after 35 s). A slower plan is planned again; a full
# sync re-reads a listed user whose key took a reading plan's version within this window before the page.
PLAN_WINDOW_S = 300.0
# The page's time on the database's clock counts this much earlier: clocks of replica-set members after a failover
CLOCK_MARGIN = timedelta(seconds=5)
# Okta's clock is known from Date headers, to the second: a listing counts as of two seconds before it was asked for
LISTING_MARGIN_US = 2_000_000


@dataclass
class Translator:
    org: str
    apps: dict[str, AppConnector]
    store: AssignmentStore
    okta: OktaReader
    outbox: PlanOutbox
    audit: Audit
    writebacks: WritebackStore | None = None
    groups: GroupPlanner | None = None
    monotonic: Callable[[], float] = time.monotonic  # only to bound Okta's clock around a page

    async def handle_event(self, event: OktaEventReceived) -> None:
        user_id = user_id_of(event)
        if event.event_type in GROUP_EVENTS and self.groups is not None:
            await self.groups.handle_event(event)
        elif event.event_type in MEMBERSHIP_EVENTS:
            app_id = target_id(event, "AppInstance")
            if app_id not in self.apps or user_id is None:
                await self._skip(event, app_id, user_id, "app is not in the connectors file")
                return
            await self._plan_read(user_id, [(app_id, _membership_change(event))], cause=event.event_type,
                                  event_uuid=event.event_uuid)
        elif event.event_type in USER_EVENTS and user_id:
            rows = await self.store.for_user(user_id, list(self.apps))
            if not rows:
                await self._skip(event, None, user_id, "user is assigned to no configured app")
                return
            await self._plan_read(user_id, [(row.app_id, {}) for row in rows], cause=event.event_type,
                                  event_uuid=event.event_uuid)
        else:
            await self._skip(event, None, user_id, f"event type {event.event_type} needs no work")

    async def handle_sync(self, request: AppSyncRequested) -> int:
        """Full sync: list the app's assignments (ceil(n/500) calls) and plan every user; returns users looked at.

        A listed user is planned from the page itself, with no read, when its take is ``trusted``: no earlier
        plan of the key can hold data newer than the page (see ``AssignmentStore.take_version``). Otherwise the
        user is read again after the take, like any plan."""
        app = self.apps.get(request.app_id)
        if app is None:
            await self.audit.record(AuditStep.SKIPPED, app_id=request.app_id, detail="sync: app not configured")
            return 0
        planned, cause, started_as_of = 0, f"sync:{request.reason}", None
        window = timedelta(seconds=PLAN_WINDOW_S)
        with tracer.start_as_current_span("okta list app users") as listing:
            listing.set_attribute(ATTR.APP_ID, app.okta_app_id)
            pages = aiter(self.okta.list_app_users(app.okta_app_id))
            while True:
                # before the page is asked for: the database's clock (for the takes) and Okta's (for the rows)
                fence = ListingFence(await self.store.now() - CLOCK_MARGIN, window)
                okta_before, asked = micros(self.okta.server_now()), self.monotonic()
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
                await self.store.record_listing(app.okta_app_id, rows, request.sync_id, as_of)
                for app_user, (user_id, _) in zip(page, rows):
                    with _linked_span(listing):
                        await self._plan_listed(app.okta_app_id, user_id, app_user, fence, cause)
                    planned += 1
            missing = [] if started_as_of is None else await self.store.unassign_missing(  # no page: nothing known
                app.okta_app_id, request.sync_id, started_as_of)
            for user_id in missing:
                with _linked_span(listing):
                    await self._plan_read(user_id, [(app.okta_app_id, {})], cause=cause)
                planned += 1
        return planned

    async def _plan_listed(self, app_id: str, user_id: str, app_user: dict[str, Any], fence: ListingFence,
                           cause: str) -> None:
        user = (app_user.get("_embedded") or {}).get("user")
        take = await self.store.take_version(app_id, user_id, listing=fence if user is not None else None)
        if take.trusted:
            await self._publish(app_id, user_id, take, user, cause=cause, app_profile=app_user.get("profile"))
            return
        user = await self._read_user(user_id)  # another plan of the key may hold a read newer than the page
        if (await self._still_newest(user_id, [(app_id, take)], cause, None))[0]:
            await self._publish(app_id, user_id, take, user, cause=cause, app_profile=app_user.get("profile"))

    async def _plan_read(self, user_id: str, keys: list[tuple[str, dict[str, Any]]], *, cause: str,
                         event_uuid: str | None = None) -> None:
        """Versions first, then one read of the user, then each version is checked to be still the key's newest.

        A version taken before the read means a later read gets a later version; the check after the read drops a
        plan whose key took a newer version meanwhile (that plan reads after it took its version and decides).
        So the plans that go out read Okta in the order of their versions, and the dispatcher's version check
        keeps that order on the target."""
        takes = [(app_id, await self.store.take_version(app_id, user_id, **membership)) for app_id, membership in keys]
        user = await self._read_user(user_id)
        for (app_id, take), keep in zip(takes, await self._still_newest(user_id, takes, cause, event_uuid)):
            if keep:
                await self._publish(app_id, user_id, take, user, cause=cause, event_uuid=event_uuid)

    async def _still_newest(self, user_id: str, takes: list[tuple[str, Take]], cause: str,
                            event_uuid: str | None) -> list[bool]:
        """After the read: each take is checked to be its key's newest (else the plan is dropped, superseded) and
        the read to have ended within the plan window of every take, on the database's clock (else the message
        is planned again: a retry takes new versions)."""
        checks = [await self.store.check(app_id, user_id) for app_id, _ in takes]
        for (_, take), (_, now) in zip(takes, checks):
            if now - take.at > timedelta(seconds=PLAN_WINDOW_S):
                raise OktaTransientError(f"plan of user {user_id} read Okta for {(now - take.at).total_seconds():.0f}"
                                         f" s, longer than the {PLAN_WINDOW_S:.0f} s plan window; planned again")
        keep = []
        for (app_id, take), (newest, _) in zip(takes, checks):
            keep.append(newest == take.version)
            if newest != take.version:
                await self.audit.record(AuditStep.SKIPPED, event_uuid=event_uuid, event_type=cause, app_id=app_id,
                                        okta_user_id=user_id, plan_version=take.version,
                                        detail=f"superseded: version {newest} of this key was taken while this "
                                               f"plan read Okta; the newer plan decides")
        return keep

    async def _publish(self, app_id: str, user_id: str, take: Take, user: dict[str, Any] | None, *, cause: str,
                       event_uuid: str | None = None, app_profile: dict[str, Any] | None = None) -> None:
        app = self.apps[app_id]
        version, assignment = take.version, take.assignment
        status = user.get("status") if user else None
        decision = decide(status, bool(assignment and assignment.assigned), app)
        span = trace.get_current_span()
        span.set_attribute(ATTR.APP_ID, app_id)
        span.set_attribute(ATTR.USER_ID, user_id)
        common = dict(event_uuid=event_uuid, event_type=cause, app_id=app_id, okta_user_id=user_id, plan_version=version)
        if decision.action is None:
            await self.audit.record(AuditStep.SKIPPED, detail=decision.reason, **common)
            return
        username = assignment.app_username if assignment else None
        attrs, unique = map_user(app, user or {"id": user_id, "profile": {}}, username, app_profile)
        plan = ScimOperationPlanned(org=self.org, app_id=app_id, okta_user_id=user_id, version=version,
                                    action=decision.action, attributes=attrs, unique_value=unique,
                                    cause=cause, event_uuid=event_uuid)
        span.set_attribute(ATTR.PLAN_VERSION, version)
        span.set_attribute(ATTR.PLAN_ACTION, decision.action.value)
        await asyncio.gather(  # both confirmed before the message is acked; their order does not matter
            self.outbox.publish(plan, app.pool),
            self.audit.record(AuditStep.PLANNED, detail=f"{decision.action.value}: {decision.reason}", **common))

    async def handle_writeback(self, observed: TargetValuesObserved) -> None:
        """``accept_user_updates``: the values the target answered differently go to the Okta app-user profile,
        only those that changed since the last write, all of one user's in one call (the apps bucket's budget is
        respected by the client). The log events these writes cause carry our token id and are not published."""
        app = self.apps.get(observed.app_id)
        if app is None or not app.accept_user_updates:
            return
        values = {v.path: v.value for v in observed.values if v.path != "externalId"}
        changed = await self.writebacks.changed(observed.app_id, observed.okta_user_id, values)
        common = dict(event_uuid=observed.event_uuid, event_type="writeback", app_id=observed.app_id,
                      okta_user_id=observed.okta_user_id)
        if not changed:
            await self.audit.record(AuditStep.SKIPPED, detail="write-back: nothing changed", **common)
            return
        await self.okta.update_app_user_profile(observed.app_id, observed.okta_user_id, changed)
        await self.writebacks.remember(observed.app_id, observed.okta_user_id, changed)
        await self.audit.record(AuditStep.APPLIED, detail=f"wrote app-user profile: {', '.join(sorted(changed))}",
                                **common)

    async def _read_user(self, user_id: str) -> dict[str, Any] | None:
        try:
            return await self.okta.get_user(user_id)
        except OktaNotFoundError:
            return None

    async def _skip(self, event: OktaEventReceived, app_id: str | None, user_id: str | None, why: str) -> None:
        await self.audit.record(AuditStep.SKIPPED, event_uuid=event.event_uuid, event_type=event.event_type,
                                app_id=app_id, okta_user_id=user_id, detail=why)


def _linked_span(listing: trace.Span):
    """Work shared by many users (one listing) is its own span, linked to each user's own trace."""
    return tracer.start_as_current_span("plan from listing", context=context.Context(),
                                        links=[trace.Link(listing.get_span_context())])


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
