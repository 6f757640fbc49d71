"""Translator handlers: each message means "look at (app, user) again"; the plan comes from the state read now.

Membership events keep the assignment table (org, app, user, app username) current; ``user.*`` events are routed
to apps through it; full syncs re-list an app's assignments, 500 a call, with each user embedded.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from opentelemetry import context, trace

from okta_bridge.audit import Audit
from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import (AppSyncRequested, AuditStep, OktaEventReceived, ScimOperationPlanned,
                                   TargetValuesObserved)
from okta_bridge.events import GROUP_EVENTS, MEMBERSHIP_EVENTS, USER_EVENTS, target_id, user_id_of
from okta_bridge.group_state import micros
from okta_bridge.okta_client import OktaNotFoundError
from okta_bridge.telemetry import ATTR
from translator.groups import GroupPlanner
from translator.mapping import map_user
from translator.ports import AssignmentStore, OktaReader, PlanOutbox, WritebackStore
from translator.state_table import decide

log = logging.getLogger(__name__)
tracer = trace.get_tracer("translator")


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

    async def handle_event(self, event: OktaEventReceived) -> None:
        user_id = user_id_of(event)
        if event.event_type in GROUP_EVENTS and self.groups is not None:
            await self.groups.handle_event(event)
        elif event.event_type in MEMBERSHIP_EVENTS:
            app_id = target_id(event, "AppInstance")
            if app_id not in self.apps or user_id is None:
                await self._skip(event, app_id, user_id, "app is not in the connectors file")
                return
            await self.plan(app_id, user_id, cause=event.event_type, event_uuid=event.event_uuid,
                            membership=_membership_change(event))
        elif event.event_type in USER_EVENTS and user_id:
            rows = await self.store.for_user(user_id, list(self.apps))
            if not rows:
                await self._skip(event, None, user_id, "user is assigned to no configured app")
                return
            user = await self._read_user(user_id)
            for row in rows:
                await self.plan(row.app_id, user_id, cause=event.event_type, event_uuid=event.event_uuid,
                                user=user, read=True)
        else:
            await self._skip(event, None, user_id, f"event type {event.event_type} needs no work")

    async def handle_sync(self, request: AppSyncRequested) -> int:
        """Full sync: list the app's assignments (ceil(n/500) calls) and plan every user; returns users planned."""
        app = self.apps.get(request.app_id)
        if app is None:
            await self.audit.record(AuditStep.SKIPPED, app_id=request.app_id, detail="sync: app not configured")
            return 0
        planned = 0
        with tracer.start_as_current_span("okta list app users") as listing:
            listing.set_attribute(ATTR.APP_ID, app.okta_app_id)
            async for page in self.okta.list_app_users(app.okta_app_id):
                rows = [(u["id"], (u.get("credentials") or {}).get("userName")) for u in page]
                await self.store.record_listing(app.okta_app_id, rows, request.sync_id)
                for app_user, (user_id, username) in zip(page, rows):
                    user = (app_user.get("_embedded") or {}).get("user")
                    await self._plan_linked(listing, app.okta_app_id, user_id, f"sync:{request.reason}", user,
                                            app_user.get("profile"))
                    planned += 1
            for user_id in await self.store.unassign_missing(app.okta_app_id, request.sync_id):
                await self._plan_linked(listing, app.okta_app_id, user_id, f"sync:{request.reason}", None)
                planned += 1
        return planned

    async def _plan_linked(self, listing: trace.Span, app_id: str, user_id: str, cause: str,
                           user: dict[str, Any] | None, app_profile: dict[str, Any] | None = None) -> None:
        """Work shared by many users (one listing) is its own span, linked to each user's own trace."""
        with tracer.start_as_current_span("plan from listing", context=context.Context(),
                                          links=[trace.Link(listing.get_span_context())]):
            await self.plan(app_id, user_id, cause=cause, user=user, read=user is not None, app_profile=app_profile)

    async def plan(self, app_id: str, user_id: str, *, cause: str, event_uuid: str | None = None,
                   user: dict[str, Any] | None = None, read: bool = False,
                   app_profile: dict[str, Any] | None = None, membership: dict[str, Any] | None = None) -> None:
        app = self.apps[app_id]
        # the version is taken before the Okta read: a later read always gets a later version
        version, assignment = await self.store.next_version_and_get(app_id, user_id, **(membership or {}))
        if not read:
            user = await self._read_user(user_id)
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
        return {"app_username": username}
    return {}
