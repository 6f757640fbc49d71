"""What becomes of a message after one attempt: one pure policy for user plans, group plans and the translator.

``settle(result, attempt=…, max_attempts=…, circuit=…)`` turns what happened (a :class:`Done`, a :class:`Failure`
or :class:`Blocked`) into a :class:`Verdict`: the disposition of the message, the audit notes to record and what the
app's circuit should do. Nothing here does I/O; the services carry verdicts out (:mod:`okta_bridge.settle`).

| result                                       | disposition                                | audit                    | circuit |
|----------------------------------------------|--------------------------------------------|--------------------------|---------|
| Done (applied)                               | ack                                        | applied                  | close   |
| Done (skipped: stale, superseded, …)         | ack                                        | skipped / skipped_stale  | –       |
| Blocked (circuit open, not the probe's turn) | hold                                       | held                     | –       |
| Failure target_auth (401/403)                | hold                                       | held                     | open    |
| Failure target_transient / _rate_limited     | retry tier; hold once the circuit opens;   | failed + retried / held  | failure |
|                                              | dead letter after ``max_attempts``         | / dead_lettered          |         |
| Failure group_not_ready, internal, okta_*    | retry tier; dead letter after max_attempts | retried / dead_lettered  | –       |
| Failure group_name_conflict / _not_in_okta,  | ack: nothing sent again would mend it      | failed                   | –       |
| target_only_member_refused                   |                                            |                          |         |
| any other Failure (4xx, conflict, no groups) | dead letter                                | failed + dead_lettered   | –       |

A failure acknowledged is one that concerns a part of a message and that nothing sent again could mend: a
``push_groups`` entry no single Okta group answers to (an operator names the group by id; the groups sync at each
start resolves the entries again), or a member of the target group no Okta user stands for whose removal the target
refused (there is no plan to replay; the group's next push removes it again). A member refused that is an Okta user
is dead-lettered alone, as a membership plan that names only it (``member_refused``): replayable.

Errors become failures by the :class:`~okta_bridge.contracts.Reason` they carry (``exc.code``; the SCIM and Okta
error trees set it); anything else is ``internal`` (database or broker trouble), which is retried.

A failure's text is what the audit trail, the logs, the retry and the dead letter carry, so it is made safe here
once (:func:`okta_bridge.redact.error_text`): one line of at most 300 characters, secrets masked, and the person's
values of the plan (unique value, names, emails, every attribute value) masked, however the target or Okta echoed
them. A message that matches no contract is described by field and problem, never by value
(:func:`invalid_message`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from okta_bridge.contracts import AuditStep, Reason
from okta_bridge.redact import error_text

__all__ = ["Blocked", "Circuit", "CircuitEffect", "Disposition", "Done", "Failure", "Note", "ScimCall", "Verdict",
           "failure_of", "invalid_message", "settle"]

RETRYABLE = frozenset({Reason.TARGET_TRANSIENT, Reason.TARGET_RATE_LIMITED, Reason.GROUP_NOT_READY, Reason.INTERNAL,
                       Reason.OKTA_TRANSIENT, Reason.OKTA_RATE_LIMITED, Reason.OKTA_AUTH, Reason.OKTA_REJECTED})
COUNTS_FOR_CIRCUIT = frozenset({Reason.TARGET_TRANSIENT, Reason.TARGET_RATE_LIMITED})
OF_THE_TARGET = frozenset({r for r in Reason if r.value.startswith("target_")} | {Reason.MEMBER_REFUSED})
ACKNOWLEDGED = frozenset({Reason.GROUP_NAME_CONFLICT, Reason.GROUP_NOT_IN_OKTA, Reason.TARGET_ONLY_MEMBER_REFUSED})


class Disposition(StrEnum):
    ACK = "ack"
    RETRY = "retry"  # through the delay tiers, back to its work queue
    HOLD = "hold"  # parked in the pool's hold queue while the app's circuit is open
    DEAD_LETTER = "dead_letter"


class CircuitEffect(StrEnum):
    NONE = "none"
    CLOSE = "close"  # the target answered
    FAILURE = "failure"  # one more transient failure in a row
    OPEN = "open"


@dataclass(frozen=True)
class ScimCall:
    method: str | None = None
    path: str | None = None  # redacted template
    status: int | None = None


@dataclass(frozen=True)
class Done:
    step: AuditStep  # applied, skipped or skipped_stale
    reason: Reason
    detail: str
    answered: bool = False  # the target answered a request (closes a circuit)


@dataclass(frozen=True)
class Failure:
    reason: Reason
    message: str
    retry_after_s: float | None = None
    scim: ScimCall | None = None


@dataclass(frozen=True)
class Blocked:
    """The app's circuit is open and this is not the probe's turn: the target is not called."""
    why: str


@dataclass(frozen=True)
class Circuit:
    """The app's circuit as it stands before this result."""
    open: bool = False
    failures: int = 0  # transient failures in a row so far
    threshold: int = 5


@dataclass(frozen=True)
class Note:
    step: AuditStep
    reason: Reason
    detail: str
    scim: ScimCall | None = None


@dataclass(frozen=True)
class Verdict:
    disposition: Disposition
    notes: tuple[Note, ...]
    circuit: CircuitEffect = CircuitEffect.NONE
    retry_after_s: float | None = None
    circuit_reason: str = ""  # why the circuit opens (when it does)

    @property
    def why(self) -> str:
        """The text a retry or dead letter carries: the last note's."""
        return self.notes[-1].detail if self.notes else ""


def failure_of(exc: BaseException, personal: Iterable[str] = ()) -> Failure:
    """An exception as a failure: by the reason code it carries, else ``internal``. ``personal``: the values of
    the person the message is about (:func:`okta_bridge.redact.personal_values`), masked in the text."""
    code = getattr(exc, "code", None)
    reason = code if isinstance(code, Reason) else Reason.INTERNAL
    message = getattr(exc, "message", None) or str(exc)
    if reason is Reason.INTERNAL:
        message = f"{type(exc).__name__}: {message}"
    message = error_text(message, personal)
    scim = None
    if reason in OF_THE_TARGET or reason is Reason.GROUP_NOT_READY:
        scim = ScimCall(getattr(exc, "method", None), getattr(exc, "path", None), getattr(exc, "status", None))
    return Failure(reason, message, getattr(exc, "retry_after_s", None), scim)


def invalid_message(exc: ValidationError, prefix: str) -> Failure:
    """A message no contract accepts, described by the contract it came closest to, its fields and what is wrong
    with each (``okta_user_id: not an Okta id``), never by the values: a forged message may carry anything."""
    errors = exc.errors(include_input=False, include_url=False)
    by_contract: dict[str, list[dict]] = {}
    for error in errors:  # a union's errors are per contract tried: its loc starts with the contract's name
        loc = error["loc"]
        contract = str(loc[0]) if len(loc) > 1 and str(loc[0])[:1].isupper() else ""
        by_contract.setdefault(contract, []).append(error)
    contract, closest = min(by_contract.items(), key=lambda item: len(item[1])) if by_contract else ("", [])
    fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1 if contract else 0:]) or '(message)'}: "
                       f"{e['msg'].removeprefix('Value error, ')}" for e in closest[:5])
    closest = f" (closest: {contract}: {fields})" if contract else f" ({fields})" if fields else ""
    return Failure(Reason.INVALID_MESSAGE, error_text(f"{prefix}{closest}"))


def settle(result: Done | Failure | Blocked, *, attempt: int, max_attempts: int,
           circuit: Circuit | None = None) -> Verdict:
    """``attempt`` counts from 1; ``circuit`` is None where there is none (the translator)."""
    if isinstance(result, Done):
        note = Note(result.step, result.reason, result.detail)
        closes = CircuitEffect.CLOSE if result.answered else CircuitEffect.NONE
        return Verdict(Disposition.ACK, (note,), closes)
    if isinstance(result, Blocked):
        return Verdict(Disposition.HOLD, (Note(AuditStep.HELD, Reason.CIRCUIT_OPEN,
                                               f"app circuit open, held: {result.why}"),))
    failed = Note(AuditStep.FAILED, result.reason, result.message, result.scim)
    if result.reason is Reason.TARGET_AUTH:
        return Verdict(Disposition.HOLD, (Note(AuditStep.HELD, result.reason, result.message, result.scim),),
                       CircuitEffect.OPEN, circuit_reason=result.message)
    if result.reason in COUNTS_FOR_CIRCUIT and circuit is not None:
        if circuit.open or circuit.failures + 1 >= circuit.threshold:
            why = (f"target unreachable ({circuit.failures + 1} failures in a row): {result.message}"
                   if not circuit.open else result.message)
            held = Note(AuditStep.HELD, Reason.CIRCUIT_OPEN, f"app circuit open, held: {why}", result.scim)
            return Verdict(Disposition.HOLD, (failed, held), CircuitEffect.OPEN, circuit_reason=why)
    if result.reason in RETRYABLE:
        effect = CircuitEffect.FAILURE if result.reason in COUNTS_FOR_CIRCUIT and circuit is not None \
            else CircuitEffect.NONE
        first = (failed,) if result.reason in OF_THE_TARGET else ()
        if attempt >= max_attempts:
            gave_up = Note(AuditStep.DEAD_LETTERED, Reason.GAVE_UP,
                           f"gave up after {attempt} attempts: {result.message}", result.scim)
            return Verdict(Disposition.DEAD_LETTER, (*first, gave_up), effect)
        retried = Note(AuditStep.RETRIED, result.reason, f"attempt {attempt}: {result.message}", result.scim)
        return Verdict(Disposition.RETRY, (*first, retried), effect, retry_after_s=result.retry_after_s)
    if result.reason in ACKNOWLEDGED:
        return Verdict(Disposition.ACK, (failed,))
    dead = Note(AuditStep.DEAD_LETTERED, result.reason, result.message, result.scim)
    first = (failed,) if result.reason in OF_THE_TARGET else ()
    return Verdict(Disposition.DEAD_LETTER, (*first, dead))
