"""Dead letters: what the bridge gave up on (``bridge.dead-letters``), kept small and for a limited time; list,
inspect, replay or drop them.

**What is kept.** Only what a replay needs: a :class:`DeadLetterRecord` of the ids (org, app, user, group, event),
the message's type, its version and the reason (``x-bridge-reason``, bounded); never attribute values, names,
emails, the app username or a System Log event's actor, client (IP, user agent, geographical context) or request.
:func:`minimal` makes it from any bridge message; :func:`redact_event` from a System Log event the poller could not
read. Audit batches are kept whole (they hold what the audit trail holds, and replaying them needs them). A message
RabbitMQ itself dead-letters (a consumer failed on it ``x-delivery-limit`` times) arrives whole: the audit-recorder
rewrites it as its record within a minute (:func:`compact`), and the listing shows only the record meanwhile.

**Retention.** The queue keeps a dead letter for ``DEAD_LETTERS_RETENTION_DAYS`` (default 30; RabbitMQ's
``x-message-ttl`` on the queue, expired letters are dropped; see :mod:`okta_bridge.topology`).

**Replay plans again from Okta's current state**, never from a stored body: a user's plan or write-back becomes a
"look at this (app, user) again" event for the translator (``application.user_membership.update`` with the two
ids), which reads the user from Okta and plans with a new version; a group plan becomes a group sync of the app; a
membership plan names its members again (their desired state is read when applied); an event is sent again with
its ids only; a sync request with a new sync id; an audit batch to the audit-recorder. Replays are confirmed by the
broker before the dead letter is removed, and audited (step ``replayed``). Malformed Okta events and an operator's
group delete cannot be replayed (inspect, then ``drop``, audited too).

Listing reads the queue with ``basic.get`` and returns every message unacknowledged (the dead-letter queue has no
delivery limit, so reading it does not lose anything).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, NamedTuple

import aio_pika
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from okta_bridge.connectors import ConnectorsFile
from okta_bridge.contracts import (AppSyncRequested, AuditBatch, AuditRecorded, AuditStep, EventTarget, GroupAction,
                                   GroupPlanned, MembershipPlanned, OktaEventReceived, Reason, ScimOperationPlanned,
                                   SyncReason, TargetValuesObserved)
from okta_bridge.bus import ATTEMPT_HEADER, REASON_HEADER
from okta_bridge.topology import (AUDIT_EXCHANGE, DEAD_LETTER_QUEUE, DLX, EVENT_ROUTING_PREFIX, EVENTS_EXCHANGE,
                                  PLANS_EXCHANGE, SYNC_ROUTING_KEY, key_of, partition_key, partition_of)

__all__ = ["DeadLetter", "DeadLetterRecord", "DeadLetters", "Fate", "Replay", "Taken", "compact", "is_look_again",
           "look_again", "minimal", "redact_event"]


class Fate(StrEnum):
    """What became of one dead letter an operator chose."""
    REPLAYED = "replayed"
    DROPPED = "dropped"
    NOT_REPLAYED = "not_replayed"  # nothing it names is configured any more, or it cannot be read


class Taken(NamedTuple):
    """One chosen dead letter and its fate; ``outcome`` says it in words (where it went, or why not)."""
    letter: DeadLetter
    fate: Fate
    outcome: str


class Replay(NamedTuple):
    """Where a replay goes and what it sends: ``exchange`` ("" the default exchange), its ``routing_key``, and the
    ``message`` that makes the bridge do the work again."""
    exchange: str
    routing_key: str
    message: BaseModel


LOOK_AGAIN_PREFIX = "replay-"  # the event uuid of an operator's "look again" (no System Log event has it)


def is_look_again(event: OktaEventReceived) -> bool:
    """An operator's "look at this (app, user) again" (:func:`look_again`): the translator reads the app user from
    Okta to learn the assignment too, so the key is planned from Okta's state at that moment."""
    return event.event_type == "application.user_membership.update" and event.event_uuid.startswith(LOOK_AGAIN_PREFIX)


def look_again(org: str, app_id: str, user_id: str) -> Replay:
    """The :class:`Replay` (its message an event) that makes the translator look at (app, user) again from Okta's
    current state: an ``application.user_membership.update`` naming the two ids (dead-letter replay, ``bridgectl
    provision``, a guard release). It plans with a new version, ordered, audited and traced like any event."""
    event = OktaEventReceived(org=org, event_uuid=f"{LOOK_AGAIN_PREFIX}{uuid.uuid4()}",
                              event_type="application.user_membership.update", published=datetime.now(UTC),
                              targets=(EventTarget(id=user_id, type="User"), EventTarget(id=app_id, type="AppInstance")))
    return Replay(EVENTS_EXCHANGE.name, EVENT_ROUTING_PREFIX + event.event_type, event)


_ID_MAX = 128  # an id longer than this is not an Okta id: cut, so a forged one carries little


def _short(value: Any) -> str | None:
    return value[:_ID_MAX] if isinstance(value, str) else None


class DeadLetterRecord(BaseModel):
    """What a dead letter keeps: ids, the type of what was given up on, its version. No values of people."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    dead_letter: Literal[1] = 1  # marks the record (every bridge contract forbids this field)
    kind: str  # the contract's name, or "unreadable"
    org: str | None = None
    app_id: str | None = None
    okta_user_id: str | None = None
    okta_group_id: str | None = None
    okta_user_ids: tuple[str, ...] = ()
    event_uuid: str | None = None
    event_type: str | None = None  # an event's type, a plan's cause
    published: datetime | None = None
    targets: tuple[tuple[str, str], ...] = ()  # an event's (type, id) pairs
    version: int | None = None
    action: str | None = None  # a plan's action, a sync's scope
    size: int | None = None  # an unreadable body's length (its content is not kept)


def minimal(message: BaseModel | bytes) -> DeadLetterRecord | AuditBatch | AuditRecorded:
    """The dead letter of a message: its record (audit batches and records whole)."""
    if isinstance(message, (AuditBatch, AuditRecorded, DeadLetterRecord)):
        return message
    if isinstance(message, bytes):
        try:
            raw = json.loads(message)
        except ValueError:
            raw = None
        fields = raw if isinstance(raw, dict) else {}
        version = fields.get("version")
        return DeadLetterRecord(kind="unreadable", size=len(message), org=_short(fields.get("org")),
                                app_id=_short(fields.get("app_id")), okta_user_id=_short(fields.get("okta_user_id")),
                                okta_group_id=_short(fields.get("okta_group_id")),
                                event_uuid=_short(fields.get("event_uuid")),
                                version=version if isinstance(version, int) and not isinstance(version, bool) else None)
    m: Any = message
    fields: dict[str, Any] = {"kind": type(message).__name__, "org": getattr(m, "org", None),
                              "app_id": getattr(m, "app_id", None), "okta_user_id": getattr(m, "okta_user_id", None),
                              "okta_group_id": getattr(m, "okta_group_id", None),
                              "event_uuid": getattr(m, "event_uuid", None), "version": getattr(m, "version", None)}
    if isinstance(m, OktaEventReceived):
        fields.update(event_type=m.event_type, published=m.published, targets=tuple((t.type, t.id) for t in m.targets))
    elif isinstance(m, MembershipPlanned):
        fields.update(okta_user_ids=m.okta_user_ids, event_type=m.cause)
    elif isinstance(m, (ScimOperationPlanned, GroupPlanned)):
        fields.update(action=m.action.value, event_type=m.cause)
    elif isinstance(m, AppSyncRequested):
        fields.update(action=m.scope, event_type=f"sync:{m.reason}")
    return DeadLetterRecord(**fields)


_EVENT_FIELDS = ("uuid", "eventType", "published", "version", "severity")


def redact_event(raw: Any) -> dict[str, Any]:
    """A System Log event the poller could not read, as its dead letter keeps it: its uuid, type, time and its
    targets' ids and types; never ``actor``, ``client`` (IP address, user agent, ``geographicalContext``),
    ``request`` (the IP chain), ``securityContext``, ``displayMessage`` or a target's ``alternateId`` or
    ``displayName`` (names, emails)."""
    if not isinstance(raw, dict):
        return {"malformed": f"not a JSON object: {type(raw).__name__}"}
    out: dict[str, Any] = {k: (raw[k][:_ID_MAX] if isinstance(raw[k], str) else raw[k])
                           for k in _EVENT_FIELDS if isinstance(raw.get(k), (str, int, float, bool))}
    targets = raw.get("target")
    if isinstance(targets, list):
        out["target"] = [{k: t[k][:_ID_MAX] for k in ("id", "type") if isinstance(t.get(k), str)}
                         for t in targets if isinstance(t, dict)]
    return out

_MESSAGES = TypeAdapter(DeadLetterRecord | ScimOperationPlanned | GroupPlanned | MembershipPlanned | OktaEventReceived
                        | AppSyncRequested | TargetValuesObserved | AuditBatch | AuditRecorded)
_USER_KINDS = {"ScimOperationPlanned", "TargetValuesObserved"}


@dataclass
class DeadLetter:
    id: str  # the first 12 hex digits of the body's SHA-256: stable across listings
    reason: str
    attempts: int | None
    source: str  # the routing key it was dead-lettered with: the service that gave up
    kind: str  # the contract's name, or "unreadable"
    message: DeadLetterRecord | AuditBatch | AuditRecorded | dict[str, Any]  # a malformed event: redacted
    headers: dict[str, Any]

    @property
    def summary(self) -> dict[str, str]:
        m = self.message
        get = (lambda f: str(getattr(m, f, "") or "")) if not isinstance(m, dict) else (lambda f: "")
        return {"app": get("app_id"), "user": get("okta_user_id") or ",".join(getattr(m, "okta_user_ids", ()) or ()),
                "group": get("okta_group_id"), "event": get("event_uuid") or get("event_type")}

    def replay(self, connectors: ConnectorsFile, org: str) -> Replay | str:
        """The :class:`Replay` that makes the bridge do the work again from Okta's current state, or why it cannot
        be replayed."""
        m = self.message
        if isinstance(m, (AuditRecorded, AuditBatch)):
            return Replay(AUDIT_EXCHANGE.name, "", m)
        if not isinstance(m, DeadLetterRecord) or m.kind == "unreadable":
            return "not a bridge message (a malformed Okta event?): inspect it and drop it"
        org = m.org or org
        if m.app_id and m.app_id not in connectors.by_app_id() and m.kind != "OktaEventReceived":
            return f"app {m.app_id} is not in the connectors file"
        if m.kind in _USER_KINDS and m.app_id and m.okta_user_id:
            return look_again(org, m.app_id, m.okta_user_id)
        if m.kind == "GroupPlanned" and m.app_id:
            if m.action == GroupAction.DELETE.value:
                return "an operator's group delete: run the delete command again if it is still wanted"
            sync = AppSyncRequested(org=org, app_id=m.app_id, reason=SyncReason.OPERATOR, scope="groups",
                                    sync_id=uuid.uuid4().hex)
            return Replay(EVENTS_EXCHANGE.name, SYNC_ROUTING_KEY, sync)
        if m.kind == "MembershipPlanned" and m.app_id and m.okta_group_id and m.okta_user_ids:
            plan = MembershipPlanned(org=org, app_id=m.app_id, okta_group_id=m.okta_group_id,
                                     okta_user_ids=m.okta_user_ids, cause="operator:replay", event_uuid=m.event_uuid)
            app = connectors.by_app_id()[m.app_id]
            return Replay(PLANS_EXCHANGE.name,
                          partition_key(app.pool, partition_of(key_of(plan), connectors.partitions(app.pool))), plan)
        if m.kind == "OktaEventReceived" and m.event_uuid and m.event_type and m.published:
            event = OktaEventReceived(org=org, event_uuid=m.event_uuid, event_type=m.event_type,
                                      published=m.published,
                                      targets=tuple(EventTarget(id=i, type=t) for t, i in m.targets))
            return Replay(EVENTS_EXCHANGE.name, EVENT_ROUTING_PREFIX + event.event_type, event)
        if m.kind == "AppSyncRequested" and m.app_id:
            sync = AppSyncRequested(org=org, app_id=m.app_id, reason=SyncReason.OPERATOR,
                                    scope="groups" if m.action == "groups" else "users", sync_id=uuid.uuid4().hex)
            return Replay(EVENTS_EXCHANGE.name, SYNC_ROUTING_KEY, sync)
        return f"a {m.kind} without the ids a replay needs: inspect it and drop it"


class DeadLetters:
    def __init__(self, rabbitmq_url: str, org: str, operator: str, service: str = "operator-cli") -> None:
        self._url, self._org, self._operator, self._service = rabbitmq_url, org, operator, service

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
                   action: Literal["replay", "drop"]) -> list[Taken]:
        """Replays (or drops) the chosen dead letters; returns what became of each chosen one."""
        results: list[Taken] = []
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
                    await self._audit(channel, letter, AuditStep.SKIPPED, Reason.OPERATOR,
                                      f"dead letter dropped by {self._operator}")
                    await msg.ack()
                    results.append(Taken(letter, Fate.DROPPED, "dropped"))
                    continue
                where = letter.replay(connectors, self._org)
                if isinstance(where, str):
                    results.append(Taken(letter, Fate.NOT_REPLAYED, f"not replayed: {where}"))
                    continue
                target = channel.default_exchange if not where.exchange else await channel.get_exchange(where.exchange)
                await target.publish(aio_pika.Message(where.message.model_dump_json().encode(),
                                                      content_type="application/json",
                                                      delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                                      headers={ATTEMPT_HEADER: 0}),
                                     routing_key=where.routing_key, mandatory=True)
                await self._audit(channel, letter, AuditStep.REPLAYED, Reason.OPERATOR,
                                  f"replayed by {self._operator} (was dead-lettered: {letter.reason[:300]})")
                await msg.ack()  # only after the broker confirmed the replay
                results.append(Taken(letter, Fate.REPLAYED,
                                     f"replayed to {where.exchange or 'queue'} {where.routing_key}".strip()))
            await channel.close()
        return results

    async def _audit(self, channel, letter: DeadLetter, step: AuditStep, reason: Reason, detail: str) -> None:
        m = letter.message
        fields = {f: getattr(m, f, None) for f in ("app_id", "okta_user_id", "okta_group_id", "event_uuid")}
        version = getattr(m, "version", None)
        record = AuditRecorded(at=datetime.now(UTC), service=self._service, step=step, org=self._org,
                               actor=self._operator[:200],
                               event_type="operator:dead-letters", plan_version=version, reason=reason, detail=detail,
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
    message: Any
    try:  # whatever the body, only its record is shown (a message the broker dead-lettered arrives whole)
        message = minimal(_MESSAGES.validate_json(msg.body))
        kind = message.kind if isinstance(message, DeadLetterRecord) else type(message).__name__
    except ValidationError:
        try:
            raw = json.loads(msg.body)
        except ValueError:
            raw = msg.body
        message, kind = (redact_event(raw) if isinstance(raw, dict) else minimal(msg.body)), "unreadable"
    return DeadLetter(id=hashlib.sha256(msg.body).hexdigest()[:12], reason=str(reason or "(no reason recorded)")[:1000],
                      attempts=int(attempts) if isinstance(attempts, int) else None,
                      source=msg.routing_key or "", kind=kind, message=message,
                      headers={k: v for k, v in headers.items() if k in (REASON_HEADER, ATTEMPT_HEADER)})


def as_json(letter: DeadLetter) -> str:
    m = letter.message
    body = m if isinstance(m, dict) else m.model_dump(mode="json", exclude_defaults=True)
    return json.dumps({"id": letter.id, "reason": letter.reason, "attempts": letter.attempts, "source": letter.source,
                       "kind": letter.kind, "headers": {k: str(v) for k, v in letter.headers.items()},
                       "message": body}, indent=2, default=str)


_KEPT = TypeAdapter(DeadLetterRecord | AuditBatch | AuditRecorded)


def _is_kept_form(body: bytes) -> bool:
    """Already what a dead letter may keep: a record, an audit batch, or a redacted System Log event."""
    try:
        _KEPT.validate_json(body)
        return True
    except ValidationError:
        pass
    try:
        raw = json.loads(body)
    except ValueError:
        return False
    return isinstance(raw, dict) and (raw == redact_event(raw) or set(raw) == {"malformed"})


async def compact(connection: aio_pika.abc.AbstractConnection, limit: int = 1000) -> int:
    """Rewrites the dead letters that arrived whole (RabbitMQ's own, at a work queue's delivery limit) as their
    records: each record is confirmed in the queue (with the reason and routing key of the original) before the
    original is removed. Returns how many were rewritten. Letters already small are left where they are."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    rewritten = 0
    try:
        queue = await channel.declare_queue(DEAD_LETTER_QUEUE.name, passive=True)
        count = min(queue.declaration_result.message_count or 0, limit)
        dlx = await channel.get_exchange(DLX.name, ensure=False)
        for _ in range(count):
            msg = await queue.get(no_ack=False, fail=False)
            if msg is None:
                break
            if _is_kept_form(msg.body):
                continue  # left unacknowledged: back in the queue when the channel closes
            letter = _read(msg)
            body = (json.dumps(letter.message) if isinstance(letter.message, dict)
                    else letter.message.model_dump_json()).encode()
            await dlx.publish(aio_pika.Message(body, content_type="application/json",
                                               delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                               headers={REASON_HEADER: letter.reason,
                                                        ATTEMPT_HEADER: letter.attempts or 0}),
                              routing_key=msg.routing_key or "unknown", mandatory=True)
            await msg.ack()
            rewritten += 1
    finally:
        if not channel.is_closed:
            await channel.close()
    return rewritten
