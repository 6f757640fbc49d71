"""The outcome policy as a table: (result, attempt, circuit) -> disposition, audit steps, circuit effect."""

from __future__ import annotations

import pytest

from okta_bridge.contracts import AuditStep as S
from okta_bridge.contracts import Reason as R
from okta_bridge.okta_client import OktaAuthError, OktaNotFoundError, OktaTransientError
from okta_bridge.outcomes import (Blocked, Circuit, CircuitEffect as C, Disposition as D, Done, Failure, Note,
                                  failure_of, settle)
from scim_dispatcher.adapters.scim_errors import (ScimAuthError, ScimConflictError, ScimGroupsUnsupportedError,
                                                  ScimNotFoundError, ScimPermanentError, ScimTransientError)
from scim_dispatcher.groups import GroupConflictError, GroupNotReadyError

CLOSED, FOUR_IN_A_ROW, OPEN = Circuit(False, 0, 5), Circuit(False, 4, 5), Circuit(True, 5, 5)


def fail(reason: R, retry_after: float | None = None) -> Failure:
    return Failure(reason, f"{reason.value} happened", retry_after)


TABLE = [
    # result                                   attempt circuit         disposition    steps                         effect
    (Done(S.APPLIED, R.APPLIED, "updated", True), 1, CLOSED, D.ACK, [S.APPLIED], C.CLOSE),
    (Done(S.APPLIED, R.APPLIED, "already inactive"), 1, OPEN, D.ACK, [S.APPLIED], C.NONE),
    (Done(S.SKIPPED_STALE, R.STALE, "older"), 3, CLOSED, D.ACK, [S.SKIPPED_STALE], C.NONE),
    (Done(S.SKIPPED, R.ACTION_OFF, "create_users is off"), 1, None, D.ACK, [S.SKIPPED], C.NONE),
    (Blocked("target down"), 2, OPEN, D.HOLD, [S.HELD], C.NONE),
    (fail(R.TARGET_AUTH), 1, CLOSED, D.HOLD, [S.HELD], C.OPEN),
    (fail(R.TARGET_TRANSIENT), 1, CLOSED, D.RETRY, [S.FAILED, S.RETRIED], C.FAILURE),
    (fail(R.TARGET_RATE_LIMITED, 2.0), 1, CLOSED, D.RETRY, [S.FAILED, S.RETRIED], C.FAILURE),
    (fail(R.TARGET_TRANSIENT), 1, FOUR_IN_A_ROW, D.HOLD, [S.FAILED, S.HELD], C.OPEN),
    (fail(R.TARGET_TRANSIENT), 2, OPEN, D.HOLD, [S.FAILED, S.HELD], C.OPEN),  # the probe failed: stays open
    (fail(R.TARGET_TRANSIENT), 15, CLOSED, D.DEAD_LETTER, [S.FAILED, S.DEAD_LETTERED], C.FAILURE),
    (fail(R.GROUP_NOT_READY), 1, FOUR_IN_A_ROW, D.RETRY, [S.RETRIED], C.NONE),  # never opens a circuit
    (fail(R.INTERNAL), 1, CLOSED, D.RETRY, [S.RETRIED], C.NONE),
    (fail(R.INTERNAL), 15, CLOSED, D.DEAD_LETTER, [S.DEAD_LETTERED], C.NONE),
    (fail(R.OKTA_RATE_LIMITED, 30.0), 1, None, D.RETRY, [S.RETRIED], C.NONE),
    (fail(R.OKTA_TRANSIENT), 15, None, D.DEAD_LETTER, [S.DEAD_LETTERED], C.NONE),
    (fail(R.TARGET_TRANSIENT), 1, None, D.RETRY, [S.FAILED, S.RETRIED], C.NONE),  # no circuit (translator)
    (fail(R.TARGET_REJECTED), 1, CLOSED, D.DEAD_LETTER, [S.FAILED, S.DEAD_LETTERED], C.NONE),
    (fail(R.TARGET_CONFLICT), 1, CLOSED, D.DEAD_LETTER, [S.FAILED, S.DEAD_LETTERED], C.NONE),
    (fail(R.TARGET_NO_GROUPS), 1, CLOSED, D.DEAD_LETTER, [S.FAILED, S.DEAD_LETTERED], C.NONE),
    (fail(R.INVALID_MESSAGE), 1, None, D.DEAD_LETTER, [S.DEAD_LETTERED], C.NONE),
    (fail(R.NOT_CONFIGURED), 1, CLOSED, D.DEAD_LETTER, [S.DEAD_LETTERED], C.NONE),
    (Done(S.SKIPPED_STALE, R.SUPERSEDED, "a newer plan"), 1, CLOSED, D.ACK, [S.SKIPPED_STALE], C.NONE),
    (Done(S.SKIPPED, R.NOTHING_TO_SEND, "suspended: ignore"), 1, None, D.ACK, [S.SKIPPED], C.NONE),
    (Done(S.HELD, R.ADOPTION_HELD, "held for a person"), 1, CLOSED, D.ACK, [S.HELD], C.NONE),
    (fail(R.OKTA_AUTH), 1, None, D.RETRY, [S.RETRIED], C.NONE),
    (fail(R.OKTA_REJECTED), 15, None, D.DEAD_LETTER, [S.DEAD_LETTERED], C.NONE),
    # group planning (translator): a part of a message no retry or replay would mend is acknowledged
    (Done(S.SKIPPED, R.NOT_CONFIGURED, "pushed to no app"), 1, None, D.ACK, [S.SKIPPED], C.NONE),
    (Done(S.SKIPPED, R.GROUP_LISTED_TWICE, "listed twice"), 1, None, D.ACK, [S.SKIPPED], C.NONE),
    (Done(S.SKIPPED, R.GROUP_NAME_CONFLICT, "the one pushed stays"), 1, None, D.ACK, [S.SKIPPED], C.NONE),
    (Done(S.SKIPPED, R.GROUP_NOT_IN_OKTA, "no group named so yet"), 1, None, D.ACK, [S.SKIPPED], C.NONE),
    (fail(R.GROUP_NAME_CONFLICT), 1, None, D.ACK, [S.FAILED], C.NONE),
    (fail(R.GROUP_NAME_CONFLICT), 15, None, D.ACK, [S.FAILED], C.NONE),  # attempts change nothing
    (fail(R.GROUP_NOT_IN_OKTA), 1, None, D.ACK, [S.FAILED], C.NONE),
    # members a target refused (dispatcher), each settled alone
    (fail(R.MEMBER_REFUSED), 1, CLOSED, D.DEAD_LETTER, [S.FAILED, S.DEAD_LETTERED], C.NONE),
    (fail(R.TARGET_ONLY_MEMBER_REFUSED), 1, CLOSED, D.ACK, [S.FAILED], C.NONE),
]
# codes no result carries into settle: recorded where the step happens, or made by the policy and carry_out
NOT_SETTLED = {R.RECEIVED: "the poller's received", R.PLANNED: "a plan went out", R.OPERATOR: "an operator's command",
               R.GUARD_HELD: "the translator's guard", R.CIRCUIT_OPEN: "settle's held note",
               R.GAVE_UP: "settle's dead letter after max_attempts", R.CIRCUIT_CLOSED: "carry_out's released note"}


@pytest.mark.parametrize("result, attempt, circuit, disposition, steps, effect", TABLE,
                         ids=[f"{r.__class__.__name__}-{getattr(r, 'reason', '')}-{a}-{c}" for r, a, c, *_ in TABLE])
def test_settle(result, attempt, circuit, disposition, steps, effect):
    verdict = settle(result, attempt=attempt, max_attempts=15, circuit=circuit)
    assert verdict.disposition is disposition
    assert [n.step for n in verdict.notes] == steps
    assert verdict.circuit is effect


def test_every_reason_code_is_in_the_table_or_recorded_where_its_step_happens():
    settled = {r.reason for r, *_ in TABLE if not isinstance(r, Blocked)}
    assert set(R) - settled == set(NOT_SETTLED)
    made = {n.reason for r, a, c, *_ in TABLE for n in settle(r, attempt=a, max_attempts=15, circuit=c).notes}
    assert {R.CIRCUIT_OPEN, R.GAVE_UP} <= made


@pytest.mark.parametrize("reason", [R.GROUP_NAME_CONFLICT, R.GROUP_NOT_IN_OKTA, R.TARGET_ONLY_MEMBER_REFUSED,
                                    R.MEMBER_REFUSED])
def test_a_group_failure_is_recorded_failed_with_its_own_code_and_text(reason):
    verdict = settle(fail(reason), attempt=3, max_attempts=3, circuit=CLOSED)
    assert verdict.notes[0] == Note(S.FAILED, reason, f"{reason.value} happened")
    assert all(n.reason is reason for n in verdict.notes)  # never gave_up: the attempts do not count here
    assert verdict.why == f"{reason.value} happened"


def test_a_retry_carries_the_servers_wait_and_the_notes_carry_reason_codes():
    verdict = settle(fail(R.TARGET_RATE_LIMITED, 7.5), attempt=2, max_attempts=15, circuit=CLOSED)
    assert verdict.retry_after_s == 7.5
    assert [n.reason for n in verdict.notes] == [R.TARGET_RATE_LIMITED, R.TARGET_RATE_LIMITED]
    assert verdict.why == "attempt 2: target_rate_limited happened"


def test_giving_up_says_so_with_its_own_code():
    verdict = settle(fail(R.OKTA_TRANSIENT), attempt=10, max_attempts=10)
    assert verdict.notes[-1].reason is R.GAVE_UP
    assert verdict.why == "gave up after 10 attempts: okta_transient happened"


def test_the_circuit_opening_says_why():
    verdict = settle(fail(R.TARGET_TRANSIENT), attempt=1, max_attempts=15, circuit=FOUR_IN_A_ROW)
    assert verdict.circuit_reason == "target unreachable (5 failures in a row): target_transient happened"
    assert verdict.notes[-1].reason is R.CIRCUIT_OPEN


def _scim(cls, status, **kw):
    return cls("PUT", "/Users/{id}", status, "detail", version="2.0", **kw)


@pytest.mark.parametrize("exc, reason", [
    (_scim(ScimTransientError, 503), R.TARGET_TRANSIENT),
    (_scim(ScimTransientError, None), R.TARGET_TRANSIENT),
    (_scim(ScimTransientError, 429, retry_after_s=3.0), R.TARGET_RATE_LIMITED),
    (_scim(ScimAuthError, 401), R.TARGET_AUTH),
    (_scim(ScimPermanentError, 400), R.TARGET_REJECTED),
    (_scim(ScimNotFoundError, 404), R.TARGET_REJECTED),
    (_scim(ScimConflictError, 409), R.TARGET_CONFLICT),
    (_scim(ScimGroupsUnsupportedError, 501), R.TARGET_NO_GROUPS),
    (_scim(GroupConflictError, 409), R.TARGET_CONFLICT),
    (_scim(GroupNotReadyError, None), R.GROUP_NOT_READY),
    (OktaTransientError("okta GET -> 503", 503), R.OKTA_TRANSIENT),
    (OktaTransientError("okta GET -> 429", 429, 12.0), R.OKTA_RATE_LIMITED),
    (OktaAuthError("okta GET -> 401", 401), R.OKTA_AUTH),
    (OktaNotFoundError("okta GET -> 404", 404), R.OKTA_REJECTED),
    (ConnectionError("database away"), R.INTERNAL),
])
def test_errors_carry_their_reason_code(exc, reason):
    failure = failure_of(exc)
    assert failure.reason is reason
    if reason is R.TARGET_RATE_LIMITED:
        assert failure.retry_after_s == 3.0 and failure.scim.status == 429
    if reason is R.INTERNAL:
        assert failure.message == "ConnectionError: database away" and failure.scim is None


# --- failure text: one bounded line, a person's values masked (issue 9, item 15) -----------------------------------

HUGE = ("Ann Lee (ann.lee@acme.com, login ann.lee) cannot be saved:\n\tdepartment 'Payroll Ops' refused\r\n" * 1000)


def _plan():
    from okta_bridge.contracts import MappedAttribute, PlanAction, ScimOperationPlanned

    return ScimOperationPlanned(
        org="https://acme.okta.com", app_id="0oa1jiraxxxxxxxxxxxx", okta_user_id="00u1xxxxxxxxxxxxxxxx", version=1,
        action=PlanAction.UPSERT, unique_value="ann.lee@acme.com", cause="test",
        attributes=(MappedAttribute(path="name.givenName", value="Ann"), MappedAttribute(path="name.familyName",
                                                                                         value="Lee"),
                    MappedAttribute(path="urn:x:department", value="Payroll Ops")))


def _clean(text: str, *values: str) -> None:
    assert len(text) <= 300 and "\n" not in text and "\r" not in text and "\t" not in text, text
    for value in values:
        assert value not in text, (value, text)


def test_a_64kb_scim_1_1_error_description_becomes_one_bounded_line_without_the_persons_values():
    import httpx

    from okta_bridge.redact import personal_values
    from scim_dispatcher.adapters.scim_error_mapping import Scrubber, error_for_response

    assert len(HUGE) > 64_000
    answer = httpx.Response(400, json={"Errors": [{"description": HUGE, "code": 400}]})
    exc = error_for_response(answer, "POST", "/Users", "1.1", Scrubber())
    _clean(exc.message, "ann.lee@acme.com")
    failure = failure_of(exc, personal_values(_plan()))
    _clean(failure.message, "ann.lee", "Ann", "Lee", "Payroll Ops")
    assert failure.message.startswith("POST /Users -> 400 Bad Request: ") and "cannot be saved" in failure.message


async def test_a_64kb_okta_error_summary_becomes_one_bounded_line_without_emails():
    import httpx

    from okta_bridge.okta_client import OktaClient, OktaRequestError

    def okta(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"errorCode": "E0000001", "errorSummary": HUGE})

    client = OktaClient("https://acme.okta.com", "tok", http=httpx.AsyncClient(transport=httpx.MockTransport(okta)))
    with pytest.raises(OktaRequestError) as caught:
        await client.post("/api/v1/apps/0oa1jiraxxxxxxxxxxxx/users/00u1xxxxxxxxxxxxxxxx", {"profile": {}})
    _clean(str(caught.value), "ann.lee@acme.com")
    assert str(caught.value).startswith("okta POST /api/v1/apps/{id}/users/{id} -> 400: E0000001")
    _clean(failure_of(caught.value, ("Ann", "Lee")).message, "Ann Lee")


def test_names_are_masked_as_whole_words_only_and_secrets_in_failure_text_too():
    from okta_bridge.redact import error_text, register_secret

    assert error_text("Ann announced: ann's account", ["Ann"]) == "*** announced: ***'s account"
    register_secret("s3cret-Token-zz")
    try:
        assert "s3cret" not in failure_of(RuntimeError("Authorization: s3cret-Token-zz refused")).message
    finally:
        from okta_bridge import redact
        redact._SECRETS.discard("s3cret-Token-zz")
        redact._compiled = None


def test_a_persons_values_are_the_plans_strings_and_an_emails_local_part_not_a_group_name_or_a_type():
    from okta_bridge.contracts import GroupAction, GroupPlanned, MappedAttribute
    from okta_bridge.redact import personal_values

    plan = _plan().model_copy(update={"attributes": (
        MappedAttribute(path="emails", value=[{"value": "ann.lee@acme.com", "type": "work", "primary": True}]),
        MappedAttribute(path="name.givenName", value="Ann"))})
    assert set(personal_values(plan)) == {"ann.lee@acme.com", "ann.lee", "Ann"}
    group = GroupPlanned(org="https://acme.okta.com", app_id="0oa1jiraxxxxxxxxxxxx", okta_group_id="00g1xxxxxxxxxxxxxxxx",
                         version=1, action=GroupAction.PUSH, display_name="Sales", cause="c")
    assert personal_values(group) == ()
