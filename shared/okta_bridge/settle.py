"""Carrying out a verdict of the outcome policy (:mod:`okta_bridge.outcomes`): the message goes to a retry tier, the
hold queue or the dead letters (confirmed by the broker), and each note becomes an audit record."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from okta_bridge.audit import Audit
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
                    routing_key: str = "") -> None:
    """``fields`` go on every audit record of the message; ``done`` only on an ack's (target id, SCIM call);
    ``routing_key``: the delivery's, which a plan's retry keeps (it comes back to its own partition)."""
    if verdict.disposition is Disposition.RETRY:
        assert isinstance(message, BaseModel)
        await republisher.retry(message, attempt, verdict.retry_after_s, routing_key)
    elif verdict.disposition is Disposition.HOLD:
        assert isinstance(message, BaseModel)
        await republisher.hold(message, attempt - 1, routing_key)  # waiting in the hold queue is not an attempt
    elif verdict.disposition is Disposition.DEAD_LETTER:
        await republisher.dead_letter(message, verdict.why, attempt, source)
    for note in verdict.notes:
        extra = (done or {}) if verdict.disposition is Disposition.ACK else {}
        await audit.record(note.step, **{**fields, **note_fields(note), **extra})
