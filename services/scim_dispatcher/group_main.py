"""The dispatcher's handling of group plans: outcome -> audit, retry, hold or dead letter (as for user plans).

* transient (5xx, 429, timeouts, the group's lease busy, the group not yet in the target): retry tiers;
* credentials refused: the app's circuit opens and the plan is held;
* permanent (a target without Groups, two pushed groups with one name, a 4xx): dead-lettered with the reason;
* a member the target refuses (isolated by splitting the batch): audited as failed for that member and
  dead-lettered alone, so an operator can replay it; the rest of the batch landed.
"""

from __future__ import annotations

import logging

from pydantic import TypeAdapter

from okta_bridge.audit import BrokerAudit
from okta_bridge.contracts import AuditStep, GroupPlanned, MembershipPlanned, ScimOperationPlanned
from okta_bridge.leases import LeaseBusyError
from okta_bridge.runtime import Republisher
from okta_bridge.topology import PLANS_EXCHANGE
from scim_dispatcher.adapters.scim_errors import (ScimAuthError, ScimError, ScimGroupsUnsupportedError,
                                                  ScimTransientError)
from scim_dispatcher.circuit import Circuits
from scim_dispatcher.groups import GroupDispatcher, GroupNotReadyError, GroupOutcome

log = logging.getLogger("scim_dispatcher")
# by shape: the contracts forbid extra fields, so exactly one of them accepts a given message
PLAN_MESSAGES = TypeAdapter(ScimOperationPlanned | GroupPlanned | MembershipPlanned)

__all__ = ["PLAN_MESSAGES", "handle_group_plan", "publish_pending_memberships", "retry_or_dead_letter", "scim_fields"]


async def handle_group_plan(state: dict, republisher: Republisher, plan: GroupPlanned | MembershipPlanned,
                            attempt: int) -> None:
    audit: BrokerAudit = state["audit"]
    groups: GroupDispatcher = state["groups"]
    circuits: Circuits = state["circuits"]
    fields = dict(event_uuid=plan.event_uuid, event_type=plan.cause, app_id=plan.app_id,
                  okta_group_id=plan.okta_group_id)
    if isinstance(plan, GroupPlanned):
        fields["plan_version"] = plan.version
    elif len(plan.okta_user_ids) == 1:
        fields["okta_user_id"] = plan.okta_user_ids[0]
    if plan.app_id not in groups.apps:
        await republisher.dead_letter(plan, "app not served by this pool's configuration", attempt, "dispatcher")
        await audit.record(AuditStep.DEAD_LETTERED, detail="app is not in the connectors file", **fields)
        return
    if not circuits.allow(plan.app_id):
        reason = circuits.reason(plan.app_id)
        await republisher.hold(plan, attempt - 1)
        await audit.record(AuditStep.HELD, detail=f"app circuit open, held: {reason}", **fields)
        return
    try:
        if isinstance(plan, GroupPlanned):
            outcome = await groups.apply_group(plan)
        else:
            outcome = await groups.apply_members(plan)
    except ScimAuthError as exc:
        circuits.open(plan.app_id, exc.message)
        await republisher.hold(plan, attempt - 1)
        await audit.record(AuditStep.HELD, detail=exc.message, **scim_fields(exc), **fields)
        return
    except (ScimTransientError, LeaseBusyError) as exc:
        message = exc.message if isinstance(exc, ScimError) else str(exc)
        scim = scim_fields(exc) if isinstance(exc, ScimError) else {}
        if isinstance(exc, ScimTransientError) and not isinstance(exc, GroupNotReadyError) \
                and circuits.failure(plan.app_id, message):
            await republisher.hold(plan, attempt - 1)
            await audit.record(AuditStep.HELD, detail=f"app circuit open, held: {circuits.reason(plan.app_id)}",
                               **scim, **fields)
            return
        retry_after = getattr(exc, "retry_after_s", None)
        await retry_or_dead_letter(republisher, audit, plan, attempt, message, retry_after, scim, fields)
        return
    except ScimError as exc:
        message = exc.message
        if isinstance(exc, ScimGroupsUnsupportedError):
            message = f"the target does not support groups, so groups cannot be pushed to it ({exc.message})"
        log.warning("group plan for %s dead-lettered: %s", plan.app_id, message)
        await audit.record(AuditStep.FAILED, detail=message, **scim_fields(exc), **fields)
        await republisher.dead_letter(plan, message, attempt, "dispatcher")
        await audit.record(AuditStep.DEAD_LETTERED, detail=message, **scim_fields(exc), **fields)
        return
    except Exception as exc:  # noqa: BLE001 - database trouble and the like: transient
        log.exception("applying a group plan failed")
        await retry_or_dead_letter(republisher, audit, plan, attempt, f"{type(exc).__name__}: {exc}", None, {}, fields)
        return
    if outcome.status == "applied":  # the target answered (a stale skip never called it)
        circuits.close(plan.app_id)
    await _record(audit, plan, outcome, fields)
    for member, reason in outcome.failed:
        member_fields = {**fields, "okta_user_id": member, "plan_version": None}
        await audit.record(AuditStep.FAILED, target_id=outcome.target_id, detail=reason, **member_fields)
        if member.startswith("00u"):  # an Okta user: replayable alone
            single = MembershipPlanned(org=plan.org, app_id=plan.app_id, okta_group_id=plan.okta_group_id,
                                       okta_user_ids=(member,), cause=plan.cause, event_uuid=plan.event_uuid)
            await republisher.dead_letter(single, reason, attempt, "dispatcher")
            await audit.record(AuditStep.DEAD_LETTERED, detail=reason, **member_fields)


async def _record(audit: BrokerAudit, plan, outcome: GroupOutcome, fields: dict) -> None:
    step = {"applied": AuditStep.APPLIED, "skipped": AuditStep.SKIPPED}.get(outcome.status, AuditStep.SKIPPED_STALE)
    await audit.record(step, target_id=outcome.target_id, duration_ms=outcome.duration_ms, detail=outcome.detail,
                       scim_path="/Groups/{id}" if outcome.requests else None, **fields)


async def publish_pending_memberships(state: dict, plan: ScimOperationPlanned) -> None:
    """A user just provisioned may be waiting to join pushed groups: plan those memberships now."""
    app = state["dispatcher"].apps[plan.app_id]
    for group_id in await state["group_state"].pending_for_user(plan.app_id, plan.okta_user_id):
        membership = MembershipPlanned(org=plan.org, app_id=plan.app_id, okta_group_id=group_id,
                                       okta_user_ids=(plan.okta_user_id,), cause="member provisioned",
                                       event_uuid=plan.event_uuid)
        await state["broker"].publish(membership, exchange=PLANS_EXCHANGE, routing_key=app.pool, persist=True)


async def retry_or_dead_letter(republisher: Republisher, audit: BrokerAudit, plan, attempt: int, reason: str,
                               retry_after: float | None, scim: dict, fields: dict) -> None:
    if attempt >= republisher.max_attempts:
        await republisher.dead_letter(plan, f"gave up after {attempt} attempts: {reason}", attempt, "dispatcher")
        await audit.record(AuditStep.DEAD_LETTERED, detail=f"gave up after {attempt} attempts: {reason}", **scim,
                           **fields)
        return
    await republisher.retry(plan, attempt, retry_after)
    await audit.record(AuditStep.RETRIED, detail=f"attempt {attempt}: {reason}", **scim, **fields)


def scim_fields(exc: ScimError) -> dict:
    return {"scim_method": exc.method, "scim_path": exc.path, "scim_status": exc.status}
