"""Members a target refused in a group or membership plan are settled one by one by the outcome policy
(``okta_bridge.outcomes.settle``): an Okta user is dead-lettered alone as a membership plan that names only it
(replayable), a target-only member is recorded and acknowledged (nothing to replay)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from okta_bridge.contracts import AuditStep, GroupAction, GroupPlanned, MembershipPlanned, Reason
from scim_dispatcher.consume import after_applied, plan_fields
from scim_dispatcher.groups import GroupOutcome
from tests.unit.fakes import ORG, FakeAudit

APP, GROUP = "0oa1jiraxxxxxxxxxxxx", "00g1b2c3d4e5f6g7h8i9"
ANN, BOB = "00u1xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx"


class FakeRepublisher:
    max_attempts = 15

    def __init__(self) -> None:
        self.dead: list[tuple[Any, str, int, str]] = []

    async def dead_letter(self, message, reason: str, attempt: int, source: str) -> None:
        self.dead.append((message, reason, attempt, source))

    async def retry(self, *args, **kwargs) -> None:
        raise AssertionError("a refused member is never retried")

    async def hold(self, *args, **kwargs) -> None:
        raise AssertionError("a refused member is never held")


async def test_each_refused_member_goes_through_the_policy_with_its_own_reason_code():
    plan = GroupPlanned(org=ORG, app_id=APP, okta_group_id=GROUP, version=3, action=GroupAction.PUSH,
                        display_name="Sales", cause="sync:startup", event_uuid="ev-1")
    outcome = GroupOutcome(AuditStep.APPLIED, Reason.APPLIED, "tg-1", "1 added", 3.0,
                           failed=[(ANN, "add refused: 400 invalid member"),
                                   ("target-only-7", "remove refused: 400 mutability"),
                                   (BOB, "add refused: 400 no such user")])
    audit, republisher = FakeAudit(), FakeRepublisher()
    ports = SimpleNamespace(audit=audit)

    await after_applied(ports, republisher, plan, outcome, 2, plan_fields(plan))  # type: ignore[arg-type]

    assert [(s, f["reason"], f["okta_user_id"]) for s, f in audit.records] == [
        (AuditStep.FAILED, Reason.MEMBER_REFUSED, ANN), (AuditStep.DEAD_LETTERED, Reason.MEMBER_REFUSED, ANN),
        (AuditStep.FAILED, Reason.TARGET_ONLY_MEMBER_REFUSED, "target-only-7"),
        (AuditStep.FAILED, Reason.MEMBER_REFUSED, BOB), (AuditStep.DEAD_LETTERED, Reason.MEMBER_REFUSED, BOB)]
    for _, fields in audit.records:
        assert (fields["target_id"], fields["okta_group_id"], fields["plan_version"]) == ("tg-1", GROUP, None)
        assert fields["event_uuid"] == "ev-1"
    assert audit.records[0][1]["detail"] == "add refused: 400 invalid member"
    # an Okta user alone, replayable; the target-only member has no plan to replay
    assert [(m.okta_user_ids, why, attempt, source) for m, why, attempt, source in republisher.dead] == [
        ((ANN,), "add refused: 400 invalid member", 2, "dispatcher"),
        ((BOB,), "add refused: 400 no such user", 2, "dispatcher")]
    for message, *_ in republisher.dead:
        assert message == MembershipPlanned(org=ORG, app_id=APP, okta_group_id=GROUP, okta_user_ids=message.okta_user_ids,
                                            cause="sync:startup", event_uuid="ev-1")
