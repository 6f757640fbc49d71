"""Carrying out a verdict of the outcome policy (:mod:`okta_bridge.outcomes`): the message goes to a retry tier, the
hold queue or the dead letters (confirmed by the broker), and each note becomes an audit record.

A held plan loops through the hold queue every ``HOLD_TTL_MS`` while its app's circuit stays open; it is audited
when it is first parked and when it is released, not at every loop: the time of its first park travels in its
headers (``held_since``), so a restart forgets nothing."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from okta_bridge.audit import Audit
from okta_bridge.contracts import AuditStep, Reason
from okta_bridge.outcomes import Disposition, Note, Verdict
from okta_bridge.runtime import Republisher

__all__ = ["carry_out", "note_fields"]


def note_fields(note: Note) -> dict[str, Any]:
    fields: dict[str, Any] = {"reason": note.reason, "detail": note.detail}
    if note.scim is not None:
        fields.update(scim_method=note.scim.method, scim_path=note.scim.path, scim_status=note.scim.status)
    return fields


async def carry_out(verdict: Verdict, message: BaseModel | bytes, attempt: int, *, republisher: Republisher,
                    audit: Audit, source: str, fields: dict[str, Any], done: dict[str, Any] | None = None,
                    routing_key: str = "", held_since: float | None = None) -> None:
    """``fields`` go on every audit record of the message; ``done`` only on an ack's (target id, SCIM call);
    ``routing_key``: the delivery's, which a plan's retry keeps (it comes back to its own partition);
    ``held_since``: when a plan coming back from the hold queue was first parked (None: it is not)."""
    notes = verdict.notes
    if verdict.disposition is Disposition.RETRY:
        assert isinstance(message, BaseModel)
        await republisher.retry(message, attempt, verdict.retry_after_s, routing_key)
    elif verdict.disposition is Disposition.HOLD:
        assert isinstance(message, BaseModel)
        # waiting in the hold queue is not an attempt; parked again, it is not audited again
        await republisher.hold(message, attempt - 1, routing_key, held_since=held_since or round(time.time(), 3))
        if held_since is not None:
            notes = tuple(n for n in notes if n.step is not AuditStep.HELD)
    elif verdict.disposition is Disposition.DEAD_LETTER:
        await republisher.dead_letter(message, verdict.why, attempt, source)
    if held_since is not None and verdict.disposition is not Disposition.HOLD:
        waited = max(0.0, time.time() - held_since)
        notes = (Note(AuditStep.RELEASED, Reason.CIRCUIT_CLOSED,
                      f"released from the hold queue after {waited:.0f} s: the app's circuit let it through"), *notes)
    for note in notes:
        extra = (done or {}) if verdict.disposition is Disposition.ACK else {}
        await audit.record(note.step, **{**fields, **note_fields(note), **extra})
