"""One plan message, start to end: parse, apply (user or group plan), then the outcome policy decides.

The ladder (circuit, credentials, transient, permanent) is :func:`okta_bridge.outcomes.settle`, shared with the
translator; this module only gathers what a plan needs before and after it is applied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from okta_bridge.audit import Audit
from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import (AuditStep, GroupPlanned, MembershipPlanned, PlanAction, Reason, ScimOperationPlanned,
                                   TargetValuesObserved)
from okta_bridge.stores.groups import GroupState
from okta_bridge.outcomes import Blocked, Disposition, Done, Failure, failure_of, settle
from okta_bridge.runtime import Republisher
from okta_bridge.settle import carry_out
from scim_dispatcher.circuit import Circuits
from scim_dispatcher.groups import GroupDispatcher, GroupOutcome
from scim_dispatcher.handlers import Dispatcher, Outcome
from scim_dispatcher.observed import observed_changes

log = logging.getLogger("scim_dispatcher")
# by shape: the contracts forbid extra fields, so exactly one of them accepts a given message
PLAN_MESSAGES = TypeAdapter(ScimOperationPlanned | GroupPlanned | MembershipPlanned)
Plan = ScimOperationPlanned | GroupPlanned | MembershipPlanned
SOURCE = "dispatcher"

__all__ = ["DispatcherPorts", "PLAN_MESSAGES", "Outbox", "handle_plan"]


class Outbox(Protocol):
    """What a dispatcher publishes besides retries and audit: follow-up plans and write-backs."""

    async def plan(self, plan: MembershipPlanned, pool: str) -> None: ...
    async def observed(self, values: TargetValuesObserved) -> None: ...


@dataclass
class DispatcherPorts:
    apps: dict[str, AppConnector]
    users: Dispatcher
    groups: GroupDispatcher
    group_state: GroupState
    circuits: Circuits
    audit: Audit
    outbox: Outbox


async def handle_plan(ports: DispatcherPorts, republisher: Republisher, body: bytes, attempt: int) -> None:
    """Returns once the outcome is durable (link written, or the retry, hold or dead letter confirmed)."""
    try:
        plan: Plan = PLAN_MESSAGES.validate_json(body)
    except ValidationError as exc:
        failure = Failure(Reason.INVALID_MESSAGE, f"invalid plan: {exc.error_count()} error(s)")
        await carry_out(settle(failure, attempt=attempt, max_attempts=republisher.max_attempts), body, attempt,
                        republisher=republisher, audit=ports.audit, source=SOURCE, fields={})
        return
    fields = _fields(plan)
    configured = plan.app_id in ports.apps
    result: Done | Failure | Blocked
    outcome: Outcome | GroupOutcome | None = None
    if not configured:
        result = Failure(Reason.NOT_CONFIGURED, "app not served by this pool's configuration")
    elif not ports.circuits.allow(plan.app_id):
        result = Blocked(ports.circuits.reason(plan.app_id))  # read now: a probe may close it while we publish
    else:
        try:
            outcome = await _apply(ports, plan)
            result = outcome_done(outcome)
        except Exception as exc:  # noqa: BLE001 - every failure is settled by the policy
            result = failure_of(exc)
            if result.reason is Reason.INTERNAL:
                log.exception("applying a plan failed")
    circuit = ports.circuits.view(plan.app_id) if configured else None
    verdict = settle(result, attempt=attempt, max_attempts=republisher.max_attempts, circuit=circuit)
    if configured:
        ports.circuits.apply(plan.app_id, verdict.circuit, verdict.circuit_reason)
    if verdict.disposition is Disposition.DEAD_LETTER:
        log.warning("plan for %s dead-lettered: %s", plan.app_id, verdict.why)
    await carry_out(verdict, plan, attempt, republisher=republisher, audit=ports.audit, source=SOURCE, fields=fields,
                    done=_done_fields(outcome))
    if outcome is not None:
        await _after(ports, republisher, plan, outcome, attempt, fields)


async def _apply(ports: DispatcherPorts, plan: Plan) -> Outcome | GroupOutcome:
    if isinstance(plan, ScimOperationPlanned):
        return await ports.users.apply(plan)
    if isinstance(plan, GroupPlanned):
        return await ports.groups.apply_group(plan)
    return await ports.groups.apply_members(plan)


def outcome_done(outcome: Outcome | GroupOutcome) -> Done:
    return Done(outcome.step, outcome.reason, outcome.detail, answered=outcome.step is AuditStep.APPLIED)


def _fields(plan: Plan) -> dict[str, Any]:
    fields: dict[str, Any] = dict(event_uuid=plan.event_uuid, event_type=plan.cause, app_id=plan.app_id)
    if isinstance(plan, ScimOperationPlanned):
        fields.update(okta_user_id=plan.okta_user_id, plan_version=plan.version)
    elif isinstance(plan, GroupPlanned):
        fields.update(okta_group_id=plan.okta_group_id, plan_version=plan.version)
    else:
        fields["okta_group_id"] = plan.okta_group_id
        if len(plan.okta_user_ids) == 1:
            fields["okta_user_id"] = plan.okta_user_ids[0]
    return fields


def _done_fields(outcome: Outcome | GroupOutcome | None) -> dict[str, Any]:
    if isinstance(outcome, Outcome):
        return dict(target_id=outcome.target_id, scim_method=outcome.method, scim_path=outcome.path,
                    scim_status=outcome.http_status, duration_ms=outcome.duration_ms)
    if isinstance(outcome, GroupOutcome):
        return dict(target_id=outcome.target_id, duration_ms=outcome.duration_ms,
                    scim_path="/Groups/{id}" if outcome.requests else None)
    return {}


async def _after(ports: DispatcherPorts, republisher: Republisher, plan: Plan, outcome: Outcome | GroupOutcome,
                 attempt: int, fields: dict[str, Any]) -> None:
    """What an applied plan leads to: memberships that waited for the user, values written back to Okta, and the
    members a target refused (each dead-lettered alone, replayable)."""
    if isinstance(outcome, GroupOutcome):
        await _refused_members(ports, republisher, plan, outcome, attempt, fields)
        return
    assert isinstance(plan, ScimOperationPlanned)
    app = ports.apps[plan.app_id]
    if app.push_groups and outcome.step in (AuditStep.APPLIED, AuditStep.SKIPPED_STALE) and outcome.target_id \
            and plan.action is PlanAction.UPSERT:
        for group_id in await ports.group_state.pending_for_user(plan.app_id, plan.okta_user_id):
            await ports.outbox.plan(MembershipPlanned(
                org=plan.org, app_id=plan.app_id, okta_group_id=group_id, okta_user_ids=(plan.okta_user_id,),
                cause="member provisioned", event_uuid=plan.event_uuid), app.pool)
    if app.accept_user_updates and outcome.returned:
        values = observed_changes(app, plan, outcome.returned)
        if values:
            await ports.outbox.observed(TargetValuesObserved(
                org=plan.org, app_id=plan.app_id, okta_user_id=plan.okta_user_id, values=values,
                event_uuid=plan.event_uuid))


async def _refused_members(ports: DispatcherPorts, republisher: Republisher, plan: Plan, outcome: GroupOutcome,
                           attempt: int, fields: dict[str, Any]) -> None:
    assert isinstance(plan, (GroupPlanned, MembershipPlanned))
    for member, reason in outcome.failed:
        member_fields = {**fields, "okta_user_id": member, "plan_version": None, "reason": Reason.MEMBER_REFUSED}
        await ports.audit.record(AuditStep.FAILED, target_id=outcome.target_id, detail=reason, **member_fields)
        if member.startswith("00u"):  # an Okta user: replayable alone
            single = MembershipPlanned(org=plan.org, app_id=plan.app_id, okta_group_id=plan.okta_group_id,
                                       okta_user_ids=(member,), cause=plan.cause, event_uuid=plan.event_uuid)
            await republisher.dead_letter(single, reason, attempt, SOURCE)
            await ports.audit.record(AuditStep.DEAD_LETTERED, detail=reason, **member_fields)
