"""What the dispatcher's engine needs around applying a plan: the plan contracts, the ports, the audit fields, and
what an applied plan leads to. The ladder (circuit, credentials, transient, permanent) is
:func:`okta_bridge.outcomes.settle`, shared with the translator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import TypeAdapter

from okta_bridge.audit import Audit
from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import (AuditStep, GroupPlanned, MembershipPlanned, PlanAction, Reason, ScimOperationPlanned,
                                   TargetValuesObserved)
from okta_bridge.stores.groups import GroupState
from okta_bridge.outcomes import Done, Failure, settle
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

__all__ = ["DispatcherPorts", "PLAN_MESSAGES", "Outbox", "after_applied", "done_fields", "outcome_done", "plan_fields"]


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


def outcome_done(outcome: Outcome | GroupOutcome) -> Done:
    return Done(outcome.step, outcome.reason, outcome.detail, answered=outcome.step is AuditStep.APPLIED)


def plan_fields(plan: Plan) -> dict[str, Any]:
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


def done_fields(outcome: Outcome | GroupOutcome | None) -> dict[str, Any]:
    if isinstance(outcome, Outcome):
        return dict(target_id=outcome.target_id, scim_method=outcome.method, scim_path=outcome.path,
                    scim_status=outcome.http_status, duration_ms=outcome.duration_ms)
    if isinstance(outcome, GroupOutcome):
        return dict(target_id=outcome.target_id, duration_ms=outcome.duration_ms, scim_method=outcome.scim_method,
                    scim_status=outcome.scim_status,
                    scim_path=outcome.scim_path or ("/Groups/{id}" if outcome.requests else None))
    return {}


async def after_applied(ports: DispatcherPorts, republisher: Republisher, plan: Plan, outcome: Outcome | GroupOutcome,
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
    """Each member the target refused, settled alone by the outcome policy: an Okta user (``member_refused``) is
    dead-lettered as a membership plan that names only it, replayable; a target-only member
    (``target_only_member_refused``) is recorded and acknowledged: no plan to replay, the group's next push removes
    it again."""
    assert isinstance(plan, (GroupPlanned, MembershipPlanned))
    for member, why in outcome.failed:
        okta_user = member.startswith("00u")
        failure = Failure(Reason.MEMBER_REFUSED if okta_user else Reason.TARGET_ONLY_MEMBER_REFUSED, why)
        single: Plan = plan
        if okta_user:
            single = MembershipPlanned(org=plan.org, app_id=plan.app_id, okta_group_id=plan.okta_group_id,
                                       okta_user_ids=(member,), cause=plan.cause, event_uuid=plan.event_uuid)
        await carry_out(settle(failure, attempt=attempt, max_attempts=republisher.max_attempts), single, attempt,
                        republisher=republisher, audit=ports.audit, source=SOURCE,
                        fields={**fields, "okta_user_id": member, "plan_version": None,
                                "target_id": outcome.target_id})
