"""Applying group plans: pushed groups and their members, on targets that are not uniform.

Plans of one (app, group) are applied one at a time, on the one dispatcher replica that owns the group's partition
(the engine serializes a key; the ordering key of membership is (app, group, member), and holding the whole group
is a coarser key with the same guarantee). So:

* ``push``: the linked target group is read (gone on the target: recreated, and the audit says so); an unlinked
  group is looked up by ``displayName``: one linked to another Okta group is never taken (two pushed groups with the
  same name); an unlinked one is linked only with ``link_existing_groups``; otherwise it is created. A different
  name is renamed. Then the members are brought in line from the stored facts and the target's own member list.
* ``unlink``: the link is dropped (its version kept), the target group is left in place.
* ``delete`` (operator command only): the target group is deleted, then unlinked.
* membership: the named members' stored facts are read now (newest wins, whatever order plans come in); a fact
  already applied is skipped; a member not provisioned in the app waits (it is planned again when its account is
  created; group push never creates users). Adds and removes go in batches of ``membership_batch_size``; a batch
  the target refuses with 400 is split until the refused member is alone (both dialects: SCIM 2.0 PatchOp is all or
  nothing, and SCIM 1.1 servers reject a ``members`` PATCH as a whole too); the others land. A single removal
  answered 400 ``noTarget`` counts as done. Members carry ``display`` (their userName on the target, kept with their
  account link) beside ``value``, as Okta sends them.

``membership_authority``: ``additive`` only adds and removes what Okta's facts say, so members added on the target
side stay; ``okta`` also removes target members that are not Okta members of the group.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import AuditStep, GroupAction, GroupPlanned, MembershipPlanned, Reason
from okta_bridge.stores.groups import GroupState
from okta_bridge.stores.leases import Leases
from okta_bridge.mongo import key
from okta_bridge.telemetry import ATTR
from okta_bridge.stores.group_links import GroupLink, MongoGroupLinks
from okta_bridge.stores.links import MongoLinks
from scim_dispatcher.adapters.scim_errors import (ScimConflictError, ScimError, ScimNotFoundError, ScimPermanentError,
                                                  ScimTransientError)
from scim_dispatcher.adapters.scim_groups import (ScimGroup, ScimGroupClient, recording_writes, split_until_isolated,
                                                  stop_recording)

tracer = trace.get_tracer("scim_dispatcher")
# the partition's fencing token of the plan being applied (each key runs in its own task): on every database write
_FENCE: ContextVar[int] = ContextVar("group_fence", default=0)

__all__ = ["GroupConflictError", "GroupDispatcher", "GroupNotReadyError", "GroupOutcome"]


class GroupConflictError(ScimPermanentError):
    """The target group cannot be linked (same name as another pushed group, or exists and linking is off)."""

    code = Reason.TARGET_CONFLICT  # type: ignore[assignment]


class GroupNotReadyError(ScimTransientError):
    """A membership plan came before its group was created in the target: retried later."""

    code = Reason.GROUP_NOT_READY  # type: ignore[assignment]


_APPLIED = (AuditStep.APPLIED, Reason.APPLIED)
_STALE = (AuditStep.SKIPPED_STALE, Reason.STALE)
_NOT_CONFIGURED = (AuditStep.SKIPPED, Reason.NOT_CONFIGURED)
_CONFLICT = (AuditStep.SKIPPED, Reason.TARGET_CONFLICT)


@dataclass
class GroupOutcome:
    step: AuditStep  # applied, skipped or skipped_stale
    reason: Reason
    target_id: str | None
    detail: str
    duration_ms: float
    added: int = 0
    removed: int = 0
    pending: int = 0
    requests: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (okta user id or target id, reason)
    # the plan's last write to the target (its audit record's SCIM call); None: no write was needed
    scim_method: str | None = None
    scim_path: str | None = None
    scim_status: int | None = None


@dataclass
class _Members:
    add: list[tuple[str, str, int]] = field(default_factory=list)  # (okta user, target id, version)
    remove: list[tuple[str | None, str, int]] = field(default_factory=list)  # okta user None: a target-only member
    settled: list[tuple[str, int]] = field(default_factory=list)  # nothing to send
    pending: int = 0
    display: dict[str, str] = field(default_factory=dict)  # target id -> its userName, sent as the member's display


@dataclass
class GroupDispatcher:
    apps: dict[str, AppConnector]
    clients: dict[str, ScimGroupClient]
    state: GroupState
    group_links: MongoGroupLinks
    user_links: MongoLinks
    leases: Leases

    def _name_held(self, org: str, app_id: str, name: str):
        """A target group name is claimed from the look-up before a create or link until the link is saved: two
        pushed groups of one name, applied at once (they are different keys), would otherwise both find the
        group the first one just created unlinked, and both link it. The only lease a group plan takes."""
        return self.leases.hold(key("group-name", org, app_id, name.casefold()))

    async def apply_group(self, plan: GroupPlanned, fence: int = 0) -> GroupOutcome:
        """The group plan applied; its outcome names its last write (method, path, status) for the audit. ``fence``:
        the partition's token, on every database write of the plan."""
        writes, token = recording_writes()
        fenced = _FENCE.set(fence)
        try:
            return _with_last_write(await self._apply_group(plan), writes)
        finally:
            _FENCE.reset(fenced)
            stop_recording(token)

    async def apply_members(self, plan: MembershipPlanned, fence: int = 0) -> GroupOutcome:
        """The membership plan applied; its outcome names its last write (method, path, status) for the audit."""
        writes, token = recording_writes()
        fenced = _FENCE.set(fence)
        try:
            return _with_last_write(await self._apply_members(plan), writes)
        finally:
            _FENCE.reset(fenced)
            stop_recording(token)

    async def _apply_group(self, plan: GroupPlanned) -> GroupOutcome:
        started = time.perf_counter()
        app = self.apps[plan.app_id]
        link = await self.group_links.get(plan.app_id, plan.okta_group_id)
        if link and link.applied_version >= plan.version:
            stale = f"group plan v{plan.version} is older than applied v{link.applied_version}"
            if plan.action is GroupAction.PUSH and link.target_id:  # its listing's facts still need applying
                client = self.clients[app.okta_app_id]
                try:
                    group = await client.get_group(link.target_id)
                except ScimNotFoundError:
                    return GroupOutcome(*_STALE, link.target_id, stale, _ms(started))
                return await self._reconcile(app, client, plan.okta_group_id, group, started,
                                             stale + "; members brought in line: ")
            return GroupOutcome(*_STALE, link.target_id, stale, _ms(started))
        with tracer.start_as_current_span(f"apply group {plan.action.value}") as span:
            span.set_attribute(ATTR.APP_ID, plan.app_id)
            span.set_attribute("okta.group.id", plan.okta_group_id)
            span.set_attribute(ATTR.PLAN_VERSION, plan.version)
            if plan.action is GroupAction.UNLINK:
                if not await self.group_links.save(plan.app_id, plan.okta_group_id, None, None, plan.version,
                                                   _FENCE.get()):
                    return GroupOutcome(*_STALE, link.target_id if link else None, f"a newer group plan than "
                                        f"v{plan.version} was applied, or a newer owner wrote the link", _ms(started))
                where = f"target group {link.target_id}" if link and link.target_id else "no target group"
                return GroupOutcome(*_APPLIED, link.target_id if link else None,
                                    f"unlinked; {where} left in place", _ms(started))
            if plan.action is GroupAction.DELETE:
                return await self._delete(app, plan, link, started)
            return await self._push(app, plan, link, started)

    async def _apply_members(self, plan: MembershipPlanned) -> GroupOutcome:
        started = time.perf_counter()
        app = self.apps[plan.app_id]
        link = await self.group_links.get(plan.app_id, plan.okta_group_id)
        if link is None or link.target_id is None:
            if await self.state.is_pushed(plan.app_id, plan.okta_group_id):
                raise GroupNotReadyError("PATCH", "/Groups/{id}", None, "the group is not in the target yet",
                                         version=app.version)
            return GroupOutcome(*_NOT_CONFIGURED, None, "group is not pushed to this app", _ms(started))
        with tracer.start_as_current_span("apply group members") as span:
            span.set_attribute(ATTR.APP_ID, plan.app_id)
            span.set_attribute("okta.group.id", plan.okta_group_id)
            span.set_attribute("scim.group.members", len(plan.okta_user_ids))
            facts = await self.state.members(plan.app_id, plan.okta_group_id, plan.okta_user_ids)
            todo = {u: d for u, d in facts.items() if d.get("applied_version", 0) < d["version"]}
            if not todo:
                return GroupOutcome(*_STALE, link.target_id, "membership already applied", _ms(started))
            work = await self._plan_members(todo, None)
            client = self.clients[plan.app_id]
            try:
                return await self._send(app, client, plan.okta_group_id, link.target_id, work, started, "")
            except (ScimNotFoundError, ScimTransientError) as exc:
                if not await self._gone(client, link.target_id, exc):
                    raise
        # the target group was deleted on the target: recreate it and bring every member in line
        name = link.display_name or plan.okta_group_id
        async with self._name_held(plan.org, plan.app_id, name):
            group = await self._create_or_link(app, client, plan.okta_group_id, name)
            await self.group_links.relink(plan.app_id, plan.okta_group_id, group.id, _FENCE.get())
        return await self._reconcile(app, client, plan.okta_group_id, group, started,
                                     "target group was deleted on the target: recreated; ")

    # --- push ------------------------------------------------------------------------------------------------------
    async def _push(self, app: AppConnector, plan: GroupPlanned, link: GroupLink | None, started: float) -> GroupOutcome:
        client = self.clients[app.okta_app_id]
        name = plan.display_name or plan.okta_group_id
        notes: list[str] = []
        group: ScimGroup | None = None
        if link and link.target_id:
            try:
                group = await client.get_group(link.target_id)
            except ScimNotFoundError:
                notes.append("target group was deleted on the target: recreated")
        naming = group is None or group.display_name != name
        async with self._name_held(plan.org, app.okta_app_id, name) if naming else nullcontext():
            if group is None:
                group = await self._create_or_link(app, client, plan.okta_group_id, name, notes)
            if group.display_name != name:
                await client.rename_group(group.id, name)
                notes.append(f"renamed (was {group.display_name!r})" if group.display_name else "named")
            if not await self.group_links.save(app.okta_app_id, plan.okta_group_id, group.id, name, plan.version,
                                               _FENCE.get()):
                return GroupOutcome(*_STALE, group.id, f"a newer group plan than v{plan.version} was applied",
                                    _ms(started))
        prefix = "; ".join(notes) + "; " if notes else ""
        return await self._reconcile(app, client, plan.okta_group_id, group, started, prefix)

    async def _create_or_link(self, app: AppConnector, client: ScimGroupClient, group_id: str, name: str,
                              notes: list[str] | None = None) -> ScimGroup:
        notes = notes if notes is not None else []
        existing = await client.find_group(name)
        if existing is None:
            await self.group_links.mark_creating(app.okta_app_id, group_id, name, _FENCE.get())
            try:
                created = await client.create_group(name)
                notes.append("created")
                return created
            except ScimConflictError as exc:
                existing = await client.find_group(name)
                if existing is None:
                    raise GroupConflictError("POST", "/Groups", 409, "409 on create but no group has the name",
                                             version=client.version) from exc
        owner = await self.group_links.linked_to(app.okta_app_id, existing.id)
        if owner is not None and owner.group_id != group_id:
            raise GroupConflictError("POST", "/Groups", 409,
                                     f"the target group of this name is linked to Okta group {owner.group_id}: "
                                     "two pushed groups have the same name", version=client.version)
        ours = await self.group_links.was_creating(app.okta_app_id, group_id, name)
        if ours and owner is None:  # our own create, whose answer was lost (timeout, crash): adopt it
            notes.append("created (answer lost, found and linked)")
            return existing
        if not app.link_existing_groups:
            raise GroupConflictError("POST", "/Groups", 409,
                                     "a group of this name exists in the target; set link_existing_groups: true "
                                     "to link it", version=client.version)
        notes.append("linked existing target group")
        return existing

    async def _delete(self, app: AppConnector, plan: GroupPlanned, link: GroupLink | None,
                      started: float) -> GroupOutcome:
        target_id = link and (link.target_id or link.last_target_id)
        if not target_id:
            return GroupOutcome(*_NOT_CONFIGURED, None, "this Okta group was never linked to a target group",
                                _ms(started))
        owner = await self.group_links.linked_to(app.okta_app_id, target_id)
        if owner is not None and owner.group_id != plan.okta_group_id:
            return GroupOutcome(*_CONFLICT, target_id, f"target group {target_id} is linked to Okta group "
                                f"{owner.group_id} now: not deleted", _ms(started))
        client = self.clients[app.okta_app_id]
        try:
            await client.delete_group(target_id)
            detail = f"deleted target group {target_id} ({plan.cause}) and unlinked"
        except ScimNotFoundError:
            detail = f"target group {target_id} was already gone; unlinked"
        if not await self.group_links.save(app.okta_app_id, plan.okta_group_id, None, None, plan.version,
                                           _FENCE.get()):  # a newer plan, or a newer owner: its state stands
            return GroupOutcome(*_STALE, target_id, f"{detail.split(' and unlinked')[0]}; a newer group plan than "
                                f"v{plan.version} was applied, or a newer owner wrote the link: not unlinked",
                                _ms(started))
        await self.state.forget_group(app.okta_app_id, plan.okta_group_id)
        return GroupOutcome(*_APPLIED, target_id, detail, _ms(started))

    # --- members ---------------------------------------------------------------------------------------------------
    async def _reconcile(self, app: AppConnector, client: ScimGroupClient, group_id: str, group: ScimGroup,
                         started: float, prefix: str) -> GroupOutcome:
        facts = await self.state.all_members(app.okta_app_id, group_id)
        work = await self._plan_members(facts, set(group.member_ids), authority=app.membership_authority)
        return await self._send(app, client, group_id, group.id, work, started, prefix)

    async def _plan_members(self, facts: dict[str, dict[str, Any]], on_target: set[str] | None,
                            authority: str = "additive") -> _Members:
        """``on_target`` None: the target's list is not known (single changes: add and remove are idempotent)."""
        app_id = next(iter(facts.values()))["app_id"] if facts else None
        links = await self.user_links.get_many(app_id, list(facts)) if facts else {}
        work = _Members()
        wanted: set[str] = set()
        for user_id, fact in facts.items():
            link = links.get(user_id)
            target_id = link.target_id if link else None
            if target_id is not None and link is not None and link.user_name:
                work.display[target_id] = link.user_name
            version = int(fact["version"])
            if fact["member"]:
                if target_id is None:
                    work.pending += 1  # not provisioned in the app: waits; group push never creates users
                    continue
                wanted.add(target_id)
                if on_target is not None and target_id in on_target:
                    work.settled.append((user_id, version))
                else:
                    work.add.append((user_id, target_id, version))
            elif target_id is not None and (on_target is None or target_id in on_target):
                work.remove.append((user_id, target_id, version))
            else:
                work.settled.append((user_id, version))
        if authority == "okta" and on_target is not None:
            queued = {t for _, t, _ in work.remove}
            work.remove += [(None, t, 0) for t in sorted(on_target - wanted - queued)]
        return work

    async def _send(self, app: AppConnector, client: ScimGroupClient, group_id: str, target_id: str, work: _Members,
                    started: float, prefix: str) -> GroupOutcome:
        size = app.membership_batch_size
        outcome = GroupOutcome(*_APPLIED, target_id, "", 0.0, pending=work.pending)
        await self.state.mark_applied(app.okta_app_id, group_id, work.settled, fence=_FENCE.get())
        for verb, items, op in (("add", work.add, client.add_members), ("remove", work.remove, client.remove_members)):
            for start in range(0, len(items), size):
                batch = items[start:start + size]
                calls = 0

                async def send(chunk: list[tuple[Any, str, int]], op=op) -> None:
                    nonlocal calls
                    calls += 1
                    await op(target_id, [t for _, t, _ in chunk], display=work.display)

                done, failed = await split_until_isolated(send, batch)
                outcome.requests += calls
                await self.state.mark_applied(app.okta_app_id, group_id,
                                              [(u, v) for u, _, v in done if u is not None], fence=_FENCE.get())
                await self.state.mark_refused(app.okta_app_id, group_id,
                                              [u for (u, _, _), _ in failed if u is not None],
                                              f"{verb} refused by the target", fence=_FENCE.get())
                if verb == "add":
                    outcome.added += len(done)
                else:
                    outcome.removed += len(done)
                outcome.failed += [(u or t, f"{verb} refused: {exc.message}") for (u, t, _), exc in failed]
        parts = [f"{outcome.added} added", f"{outcome.removed} removed"]
        if outcome.pending:
            parts.append(f"{outcome.pending} waiting to be provisioned")
        if outcome.failed:
            parts.append(f"{len(outcome.failed)} refused")
        outcome.detail = prefix + ", ".join(parts) + f" in {outcome.requests} request(s)"
        outcome.duration_ms = _ms(started)
        return outcome

    async def _gone(self, client: ScimGroupClient, target_id: str, exc: ScimError) -> bool:
        """Was the target group deleted on the target? (404, or the 500 some servers answer to a PATCH of a
        missing group: ask with a GET, which answers 404 for it.)"""
        if isinstance(exc, ScimNotFoundError):
            return True
        if exc.status != 500:
            return False
        try:
            await client.get_group(target_id)
        except ScimNotFoundError:
            return True
        except ScimError:
            return False
        return False


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _with_last_write(outcome: GroupOutcome, writes: list[tuple[str, str, int]]) -> GroupOutcome:
    if writes:
        outcome.scim_method, outcome.scim_path, outcome.scim_status = writes[-1]
    return outcome
