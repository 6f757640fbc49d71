"""Push Groups: which Okta groups go to which app, and what their members are, as the translator's plans.

* ``push_groups`` entries are group ids or exact names. Names resolve to ids at start (the ``groups`` sync the
  poller requests each time it starts) and when a group of that name is created (``group.lifecycle.create``).
  Once resolved the push follows the id: a rename in Okta renames the target group.
* A group sync lists each pushed group's members (the groups bucket, ``limit=200``, following ``next``), records
  them as facts stamped with Okta's time, marks the members the listing no longer shows as gone, and plans one
  ``push`` for the group: the dispatcher creates or links the target group and brings its members in line.
* ``group.user_membership.add/remove`` records one fact stamped with the event's ``published`` time and plans
  that member; no Okta read is needed, and an event that arrives late loses to the newer fact.
* ``group.profile.update`` re-reads the group and plans a ``push`` (a rename); ``group.lifecycle.delete`` and a
  group taken out of ``push_groups`` plan an ``unlink``: the target group is left in place.
* What becomes of a part of a message that plans nothing (a ``push_groups`` entry no single Okta group answers to,
  a group deleted since, an event no app concerns) is the outcome policy's (:func:`okta_bridge.outcomes.settle`), as
  is every message's: its notes are recorded here when the policy acknowledges it; one it would retry or
  dead-letter fails the whole message (:class:`GroupPlanningFailed`), which the intake settles.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from opentelemetry import trace

from okta_bridge.audit import Audit
from okta_bridge.connectors import AppConnector, is_group_id
from okta_bridge.contracts import (AppSyncRequested, AuditStep, GroupAction, GroupPlanned, MembershipPlanned,
                                   OktaEventReceived, Reason)
from okta_bridge.events import GROUP_MEMBER_EVENTS, group_id_of, user_id_of
from okta_bridge.stores.groups import GroupState, micros
from okta_bridge.okta_client import OktaNotFoundError
from okta_bridge.outcomes import Disposition, Done, Failure, settle
from okta_bridge.telemetry import ATTR

log = logging.getLogger(__name__)
tracer = trace.get_tracer("translator")
LISTING_MARGIN = timedelta(seconds=1)
MEMBERS_PER_PLAN = 200  # one membership plan per listing page at most


class GroupPlanningFailed(Exception):
    """A part of a group message failed in a way the outcome policy does not acknowledge: the whole message is
    settled by the intake (by this reason code), and a retry plans each of its parts again (plans are versioned)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.code, self.message = failure.reason, failure.message


@dataclass
class GroupPlanner:
    org: str
    apps: dict[str, AppConnector]
    state: GroupState
    okta: Any  # OktaClient: get_group, find_groups_named, list_group_members, server_now
    outbox: Any  # publish(plan, pool)
    audit: Audit

    # --- full sync of an app's pushed groups -------------------------------------------------------------------------
    async def handle_sync(self, request: AppSyncRequested) -> int:
        """Resolves the app's ``push_groups``, pushes each group with its members, unlinks the ones dropped."""
        app = self.apps.get(request.app_id)
        if app is None:
            return 0
        resolved: dict[str, tuple[str, str]] = {}  # group id -> (name, entry)
        for entry in app.push_groups:
            group = await self._resolve(app, entry)
            if group is not None:
                if group["id"] in resolved:
                    await self._settle(Done(AuditStep.SKIPPED, Reason.GROUP_LISTED_TWICE,
                                            f"push_groups lists group {group['id']} twice ({entry!r})"),
                                       app.okta_app_id, group["id"], f"sync:{request.reason}")
                    continue
                resolved[group["id"]] = (group["profile"]["name"], entry)
        for doc in await self.state.pushed_of_app(app.okta_app_id):
            if doc["group_id"] not in resolved:
                await self.unlink(app, doc["group_id"], f"sync:{request.reason}", None,
                                  "no longer in push_groups: unlinked, the target group is left in place")
        for group_id, (name, entry) in resolved.items():
            await self.push_with_members(app, group_id, name, entry, f"sync:{request.reason}", None)
        return len(resolved)

    async def _resolve(self, app: AppConnector, entry: str) -> dict[str, Any] | None:
        cause = "sync:push_groups"
        if is_group_id(entry):
            try:
                return await self.okta.get_group(entry)
            except OktaNotFoundError:
                await self._settle(Failure(Reason.GROUP_NOT_IN_OKTA,
                                           "push_groups: no Okta group has this id (deleted?); not pushed"),
                                   app.okta_app_id, entry, cause)
                return None
        for doc in await self.state.pushed_of_app(app.okta_app_id):
            if doc.get("entry") == entry:  # resolved before: the push follows the id, even after a rename in Okta
                try:
                    return await self.okta.get_group(doc["group_id"])
                except OktaNotFoundError:
                    break  # deleted in Okta: the name may now belong to another group
        found = await self.okta.find_groups_named(entry)
        if len(found) > 1:  # the one already pushed under this entry stays pushed; a newcomer is not taken
            pushed = {d["group_id"] for d in await self.state.pushed_of_app(app.okta_app_id) if d.get("entry") == entry}
            kept = [g for g in found if g["id"] in pushed]
            if len(kept) == 1:
                others = ", ".join(sorted(g["id"] for g in found if g is not kept[0]))
                await self._settle(Done(AuditStep.SKIPPED, Reason.GROUP_NAME_CONFLICT,
                                        f"push_groups: other Okta groups are also named {entry!r} ({others}); the "
                                        "group pushed before stays pushed, the others are not"),
                                   app.okta_app_id, kept[0]["id"], cause)
                return kept[0]
            ids = ", ".join(sorted(g["id"] for g in found))
            await self._settle(Failure(Reason.GROUP_NAME_CONFLICT,
                                       f"push_groups: {len(found)} Okta groups are named {entry!r} ({ids}); none is "
                                       "pushed until the entry names one id"),
                               app.okta_app_id, None, cause)
            log.warning("app %s: push_groups entry %r is ambiguous (%s)", app.name, entry, ids)
            return None
        if not found:
            await self._settle(Done(AuditStep.SKIPPED, Reason.GROUP_NOT_IN_OKTA,
                                    f"push_groups: no Okta group named {entry!r} yet; pushed when it is created"),
                               app.okta_app_id, None, cause)
            return None
        return found[0]

    async def push_with_members(self, app: AppConnector, group_id: str, name: str, entry: str | None, cause: str,
                                event_uuid: str | None) -> None:
        version = await self.state.next_group_version(app.okta_app_id, group_id)
        await self.state.set_pushed(app.okta_app_id, group_id, pushed=True, name=name, entry=entry)
        listing = uuid.uuid4().hex
        with tracer.start_as_current_span("okta list group members") as span:
            span.set_attribute(ATTR.APP_ID, app.okta_app_id)
            span.set_attribute("okta.group.id", group_id)
            count, stamp = 0, None
            async for page in self.okta.list_group_members(group_id):
                if stamp is None:  # the listing's time on Okta's clock, less a margin: a change made meanwhile wins
                    stamp = micros(self.okta.server_now() - LISTING_MARGIN)
                await self.state.want(app.okta_app_id, group_id, [(u["id"], True) for u in page], stamp, listing)
                count += len(page)
            if stamp is not None:
                await self.state.left_since_listing(app.okta_app_id, group_id, listing, stamp)
            span.set_attribute("okta.group.members", count)
        plan = GroupPlanned(org=self.org, app_id=app.okta_app_id, okta_group_id=group_id, version=version,
                            action=GroupAction.PUSH, display_name=name, cause=cause, event_uuid=event_uuid)
        await self.outbox.publish(plan, app.pool)
        await self._audit_group(AuditStep.PLANNED, Reason.PLANNED, app.okta_app_id, group_id, cause,
                                f"push group with {count} Okta member(s)", event_uuid, version)

    async def unlink(self, app: AppConnector, group_id: str, cause: str, event_uuid: str | None, why: str) -> None:
        version = await self.state.next_group_version(app.okta_app_id, group_id)
        plan = GroupPlanned(org=self.org, app_id=app.okta_app_id, okta_group_id=group_id, version=version,
                            action=GroupAction.UNLINK, cause=cause, event_uuid=event_uuid)
        await self.outbox.publish(plan, app.pool)  # first: a retry after a failure here still finds it pushed
        await self.state.set_pushed(app.okta_app_id, group_id, pushed=False, why=why)
        await self._audit_group(AuditStep.PLANNED, Reason.PLANNED, app.okta_app_id, group_id, cause, f"unlink: {why}",
                                event_uuid, version)

    # --- events ----------------------------------------------------------------------------------------------------
    async def handle_event(self, event: OktaEventReceived) -> None:
        group_id = group_id_of(event)
        if event.event_type == "group.lifecycle.create":
            await self._created(event, group_id)
            return
        pushing = [d for d in await self.state.apps_pushing(group_id) if d["app_id"] in self.apps]
        if not pushing:
            await self._settle(Done(AuditStep.SKIPPED, Reason.NOT_CONFIGURED, "group is pushed to no configured app"),
                               None, group_id, event.event_type, event.event_uuid)
            return
        for doc in pushing:
            app = self.apps[doc["app_id"]]
            if event.event_type in GROUP_MEMBER_EVENTS:
                await self._member_changed(app, group_id, event)
            elif event.event_type == "group.profile.update":
                await self._renamed(app, group_id, event)
            elif event.event_type == "group.lifecycle.delete":
                await self.unlink(app, group_id, event.event_type, event.event_uuid,
                                  "deleted in Okta: unlinked, the target group is left in place")

    async def _member_changed(self, app: AppConnector, group_id: str, event: OktaEventReceived) -> None:
        user_id = user_id_of(event)
        member = event.event_type.endswith(".add")
        changed = await self.state.want(app.okta_app_id, group_id, [(user_id, member)], micros(event.published))
        common = dict(event_uuid=event.event_uuid, event_type=event.event_type, app_id=app.okta_app_id,
                      okta_group_id=group_id, okta_user_id=user_id)
        # planned even when the fact was not newer: a retry after a failed publish finds its own fact stored, and
        # the dispatcher reads the stored facts (a plan for an applied fact is skipped there)
        plan = MembershipPlanned(org=self.org, app_id=app.okta_app_id, okta_group_id=group_id,
                                 okta_user_ids=(user_id,), cause=event.event_type, event_uuid=event.event_uuid)
        await self.outbox.publish(plan, app.pool)
        detail = ("add member" if member else "remove member") + ("" if changed else " (a newer fact is stored)")
        await self.audit.record(AuditStep.PLANNED, reason=Reason.PLANNED, detail=detail, **common)

    async def _renamed(self, app: AppConnector, group_id: str, event: OktaEventReceived) -> None:
        version = await self.state.next_group_version(app.okta_app_id, group_id)
        try:
            group = await self.okta.get_group(group_id)
        except OktaNotFoundError:  # deleted since: its delete event unlinks it
            await self._settle(Done(AuditStep.SKIPPED, Reason.GROUP_NOT_IN_OKTA, "group no longer exists in Okta"),
                               app.okta_app_id, group_id, event.event_type, event.event_uuid, version)
            return
        name = group["profile"]["name"]
        await self.state.set_pushed(app.okta_app_id, group_id, pushed=True, name=name)
        plan = GroupPlanned(org=self.org, app_id=app.okta_app_id, okta_group_id=group_id, version=version,
                            action=GroupAction.PUSH, display_name=name, cause=event.event_type,
                            event_uuid=event.event_uuid)
        await self.outbox.publish(plan, app.pool)
        await self._audit_group(AuditStep.PLANNED, Reason.PLANNED, app.okta_app_id, group_id, event.event_type,
                                "push group (profile updated)", event.event_uuid, version)

    async def _created(self, event: OktaEventReceived, group_id: str) -> None:
        target = next(t for t in event.targets if t.type == "UserGroup")
        wanted = [a for a in self.apps.values() if target.display_name in a.pushed_group_names]
        if not wanted:
            await self._settle(Done(AuditStep.SKIPPED, Reason.NOT_CONFIGURED, "no app pushes a group of this name"),
                               None, group_id, event.event_type, event.event_uuid)
            return
        try:
            group = await self.okta.get_group(group_id)
        except OktaNotFoundError:
            await self._settle(Done(AuditStep.SKIPPED, Reason.GROUP_NOT_IN_OKTA, "group no longer exists in Okta"),
                               None, group_id, event.event_type, event.event_uuid)
            return
        name = group["profile"]["name"]
        for app in wanted:
            if name != target.display_name:
                continue  # renamed since it was created: names resolve at creation and at start only
            others = [g for g in await self.okta.find_groups_named(name) if g["id"] != group_id]
            if others:
                await self._settle(Failure(Reason.GROUP_NAME_CONFLICT,
                                           f"push_groups: another Okta group is also named {name!r} "
                                           f"({', '.join(g['id'] for g in others)}); none is pushed until the entry "
                                           "names one id"),
                                   app.okta_app_id, group_id, event.event_type, event.event_uuid)
                continue
            await self.push_with_members(app, group_id, name, name, event.event_type, event.event_uuid)

    async def _settle(self, result: Done | Failure, app_id: str | None, group_id: str | None, cause: str,
                      event_uuid: str | None = None, version: int | None = None) -> None:
        """One part of the message settled by the outcome policy: recorded here when the policy acknowledges it
        (attempts do not change that), else the whole message fails (:class:`GroupPlanningFailed`)."""
        verdict = settle(result, attempt=1, max_attempts=1)
        if verdict.disposition is not Disposition.ACK:
            assert isinstance(result, Failure)
            raise GroupPlanningFailed(result)
        for note in verdict.notes:
            await self._audit_group(note.step, note.reason, app_id, group_id, cause, note.detail, event_uuid, version)

    async def _audit_group(self, step: AuditStep, reason: Reason, app_id: str | None, group_id: str | None,
                           cause: str, detail: str, event_uuid: str | None = None, version: int | None = None) -> None:
        await self.audit.record(step, reason=reason, event_uuid=event_uuid, event_type=cause, app_id=app_id,
                                okta_group_id=group_id, plan_version=version, detail=detail)
