"""Dead letters: list, inspect and replay what the bridge gave up on (``bridge.dead-letters``).

Every dead letter carries its reason (``x-bridge-reason``) and attempt count. A replay sends the message back where
it came from (plans to their app's pool, events and sync requests to the translator, audit records to the
audit-recorder), confirmed by the broker before the dead letter is removed, and is audited (step ``replayed``).
A replayed plan keeps its version, so the dispatcher's version check skips it when newer state was applied since:
an old dead letter never overwrites newer state. Malformed Okta events cannot be replayed (they would fail again);
``drop`` removes a dead letter after inspection, audited too.

Listing reads the queue with ``basic.get`` and returns every message unacknowledged (the dead-letter queue has no
delivery limit, so reading it does not lose anything).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import aio_pika
from pydantic import TypeAdapter, ValidationError

from okta_bridge.connectors import ConnectorsFile
from okta_bridge.contracts import (AppSyncRequested, AuditBatch, AuditRecorded, AuditStep, GroupPlanned, MembershipPlanned,
                                   OktaEventReceived, ScimOperationPlanned, TargetValuesObserved)
from okta_bridge.runtime import ATTEMPT_HEADER, REASON_HEADER
from okta_bridge.topology import (AUDIT_EXCHANGE, DEAD_LETTER_QUEUE, PLANS_EXCHANGE, TRANSLATOR_QUEUE, key_of,
                                  partition_key, partition_of)

__all__ = ["DeadLetter", "DeadLetters"]

_MESSAGES = TypeAdapter(ScimOperationPlanned | GroupPlanned | MembershipPlanned | OktaEventReceived
                        | AppSyncRequested | TargetValuesObserved | AuditBatch | AuditRecorded)


@dataclass
class DeadLetter:
    id: str  # the first 12 hex digits of the body's SHA-256: stable across listings
    reason: str
    attempts: int | None
    source: str  # the routing key it was dead-lettered with: the service that gave up
    kind: str  # the contract's name, or "unreadable"
    message: Any  # the parsed contract, or the raw body text
    headers: dict[str, Any]

    @property
    def summary(self) -> dict[str, str]:
        m = self.message
        get = (lambda f: str(getattr(m, f, "") or "")) if not isinstance(m, str) else (lambda f: "")
        return {"app": get("app_id"), "user": get("okta_user_id") or ",".join(getattr(m, "okta_user_ids", ()) or ()),
                "group": get("okta_group_id"), "event": get("event_uuid") or get("event_type")}

    def destination(self, connectors: ConnectorsFile) -> tuple[str, str] | str:
        """(exchange, routing key) to replay to, or why it cannot be replayed. A plan goes to its key's partition."""
        m = self.message
        if isinstance(m, (ScimOperationPlanned, GroupPlanned, MembershipPlanned)):
            app = connectors.by_app_id().get(m.app_id)
            if app is None:
                return f"app {m.app_id} is not in the connectors file"
            return PLANS_EXCHANGE.name, partition_key(app.pool, partition_of(key_of(m), connectors.partitions(app.pool)))
        if isinstance(m, (OktaEventReceived, AppSyncRequested, TargetValuesObserved)):
            return "", TRANSLATOR_QUEUE.name  # straight to the translator's work queue
        if isinstance(m, (AuditRecorded, AuditBatch)):
            return AUDIT_EXCHANGE.name, ""
        return "not a bridge message (a malformed Okta event?): inspect it and drop it"


class DeadLetters:
    def __init__(self, rabbitmq_url: str, org: str, operator: str) -> None:
        self._url, self._org, self._operator = rabbitmq_url, org, operator

    async def list(self, limit: int = 1000) -> list[DeadLetter]:
        connection = await aio_pika.connect(self._url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(DEAD_LETTER_QUEUE.name)
            out = []
            while len(out) < limit and (msg := await queue.get(no_ack=False, fail=False)) is not None:
                out.append(_read(msg))
            await channel.close()  # every message goes back, unacknowledged
            return out

    async def take(self, ids: set[str] | Literal["all"], connectors: ConnectorsFile,
                   action: Literal["replay", "drop"]) -> list[tuple[DeadLetter, str]]:
        """Replays (or drops) the chosen dead letters; returns (letter, outcome) for each chosen one."""
        results: list[tuple[DeadLetter, str]] = []
        connection = await aio_pika.connect(self._url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            queue = await channel.get_queue(DEAD_LETTER_QUEUE.name)
            count = (await queue.declare()).message_count or 0
            for _ in range(count):
                msg = await queue.get(no_ack=False, fail=False)
                if msg is None:
                    break
                letter = _read(msg)
                if ids != "all" and letter.id not in ids:
                    continue  # left unacknowledged: returned to the queue when the channel closes
                if action == "drop":
                    await self._audit(channel, letter, AuditStep.SKIPPED, f"dead letter dropped by {self._operator}")
                    await msg.ack()
                    results.append((letter, "dropped"))
                    continue
                where = letter.destination(connectors)
                if isinstance(where, str):
                    results.append((letter, f"not replayed: {where}"))
                    continue
                exchange, routing_key = where
                target = channel.default_exchange if not exchange else await channel.get_exchange(exchange)
                await target.publish(aio_pika.Message(msg.body, content_type="application/json",
                                                      delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                                      headers={ATTEMPT_HEADER: 0}),
                                     routing_key=routing_key, mandatory=True)
                await self._audit(channel, letter, AuditStep.REPLAYED,
                                  f"replayed by {self._operator} (was dead-lettered: {letter.reason[:300]})")
                await msg.ack()  # only after the broker confirmed the replay
                results.append((letter, f"replayed to {exchange or 'queue'} {routing_key}".strip()))
            await channel.close()
        return results

    async def _audit(self, channel, letter: DeadLetter, step: AuditStep, detail: str) -> None:
        m = letter.message
        fields = {f: getattr(m, f, None) for f in ("app_id", "okta_user_id", "okta_group_id", "event_uuid")}
        version = getattr(m, "version", None)
        record = AuditRecorded(at=datetime.now(UTC), service="operator-cli", step=step, org=self._org,
                               event_type="operator:dead-letters", plan_version=version, detail=detail,
                               **{k: v for k, v in fields.items() if isinstance(v, str)})
        exchange = await channel.get_exchange(AUDIT_EXCHANGE.name)
        await exchange.publish(aio_pika.Message(AuditBatch(records=(record,)).model_dump_json().encode(),
                                                content_type="application/json",
                                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="")


def _read(msg: aio_pika.abc.AbstractIncomingMessage) -> DeadLetter:
    headers = dict(msg.headers or {})
    reason = headers.get(REASON_HEADER)
    if reason is None and headers.get("x-death"):  # dead-lettered by RabbitMQ itself (delivery limit)
        death = headers["x-death"][0]
        reason = f"RabbitMQ: {death.get('reason')} in {death.get('queue')}"
    attempts = headers.get(ATTEMPT_HEADER)
    try:
        message: Any = _MESSAGES.validate_json(msg.body)
        kind = type(message).__name__
    except ValidationError:
        message, kind = msg.body.decode(errors="replace"), "unreadable"
    return DeadLetter(id=hashlib.sha256(msg.body).hexdigest()[:12], reason=str(reason or "(no reason recorded)"),
                      attempts=int(attempts) if isinstance(attempts, int) else None,
                      source=msg.routing_key or "", kind=kind, message=message,
                      headers={k: v for k, v in headers.items() if k != "x-death"})


def as_json(letter: DeadLetter) -> str:
    body = letter.message.model_dump(mode="json") if not isinstance(letter.message, str) else letter.message
    return json.dumps({"id": letter.id, "reason": letter.reason, "attempts": letter.attempts, "source": letter.source,
                       "kind": letter.kind, "headers": {k: str(v) for k, v in letter.headers.items()},
                       "message": body}, indent=2, default=str)
