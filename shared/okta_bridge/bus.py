"""The hot path on RabbitMQ: consuming with prefetch and manual acknowledgements, in batches, and publishing with
confirms, on aio-pika channels of the FastStream broker's robust connection.

FastStream keeps the connection, the declarations (:mod:`okta_bridge.topology`) and the services' lifecycles;
FastStream 0.7 has no batch subscriber for RabbitMQ, so the services consume through :class:`Consumer` (one
callback per delivery, each settled by hand once its effects are durable) and gather deliveries with
:class:`Batcher`. Trace context travels in the W3C ``traceparent`` header as FastStream's telemetry middleware
puts it, so a trace crosses both kinds of consumer.

Publishing (:class:`Publisher`) is persistent, ``mandatory`` with ``on_return_raises`` and confirmed: it returns
once the broker has the message, and raises when no queue took it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Generic, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from pydantic import BaseModel

from okta_bridge.metrics import ACKED, CONSUMED, PUBLISHED, REQUEUED, queue_family

__all__ = ["ATTEMPT_HEADER", "Batcher", "Consumer", "Delivery", "HELD_HEADER", "PUBLISH_WINDOW", "Publisher",
           "REASON_HEADER", "publish_together"]

log = logging.getLogger(__name__)
tracer = trace.get_tracer("okta_bridge.bus")
ATTEMPT_HEADER = "x-bridge-attempt"
REASON_HEADER = "x-bridge-reason"
# when a plan was first parked in the hold queue (epoch seconds): it travels with the plan around the hold loop, so
# only the first park and the release are audited, with nothing kept in a process a restart would lose
HELD_HEADER = "x-bridge-held-since"
T = TypeVar("T")
PUBLISH_WINDOW = 100  # messages published at once by publish_together (their confirms awaited together)


async def publish_together(items: list[T], publish: Callable[[T], Awaitable[Any]], window: int = PUBLISH_WINDOW,
                           confirmed: list[T] | None = None) -> None:
    """Publish every item, ``window`` at a time, their confirms awaited together: one after the other, a batch of
    100 waited for 100 confirms in a row. For messages whose order is free (different keys, or consumers that read
    state). Every item is tried; then the first failure is raised, so the caller settles the batch knowing that
    everything else went out (or was tried). ``confirmed``, when given, receives each item the broker confirmed
    (in order), so a caller can record those before it handles the failure."""
    failed: BaseException | None = None
    for start in range(0, len(items), window):
        chunk = items[start:start + window]
        done = await asyncio.gather(*(publish(i) for i in chunk), return_exceptions=True)
        failed = failed or next((d for d in done if isinstance(d, BaseException)), None)
        if confirmed is not None:
            confirmed.extend(i for i, d in zip(chunk, done) if not isinstance(d, BaseException))
    if failed is not None:
        raise failed


@dataclass(eq=False)
class Delivery:
    """One consumed message: its body, its attempt (from the header the retry path sets) and its trace context.

    ``span`` is the consume span, a child of the publisher's span, open until the delivery is settled."""

    raw: AbstractIncomingMessage
    queue: str
    attempt: int
    parent: otel_context.Context
    span: trace.Span
    received: float = field(default_factory=time.monotonic)
    settled: bool = False

    @property
    def body(self) -> bytes:
        return self.raw.body

    @property
    def routing_key(self) -> str:
        return self.raw.routing_key or ""

    @property
    def held_since(self) -> float | None:
        """When the plan was first parked in the hold queue (its header), None when it is not coming from there."""
        value = (self.raw.headers or {}).get(HELD_HEADER)
        try:
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def context(self) -> otel_context.Context:
        """The context to work on this delivery in: its consume span current."""
        return trace.set_span_in_context(self.span, self.parent)

    async def ack(self) -> None:
        if not self.settled:
            ACKED.labels(queue_family(self.queue)).inc()
        await self._settle(self.raw.ack)

    async def requeue(self) -> None:
        """Back to the queue for another consumer (counts as a delivery towards the queue's delivery limit)."""
        if not self.settled:
            REQUEUED.labels(queue_family(self.queue)).inc()
        await self._settle(lambda: self.raw.nack(requeue=True))

    async def _settle(self, action: Callable[[], Awaitable[None]]) -> None:
        if self.settled:
            return
        self.settled = True
        try:
            await action()
        except Exception as exc:  # noqa: BLE001 - the channel closed: the broker redelivers it, work is idempotent
            log.debug("settling a delivery failed (%s): it will be redelivered", exc)
        finally:
            self.span.end()


class Consumer:
    """Consumes queues on a channel of its own; each delivery goes to ``on_delivery`` unsettled.

    Prefetch is per consumer (``basic.qos`` with global off), so every queue consumed may hold ``prefetch``
    unacknowledged deliveries. A robust channel re-opens after a broker restart and resumes its consumers;
    deliveries of the old channel cannot be settled any more (the broker gives them to a consumer again)."""

    def __init__(self, connection: AbstractRobustConnection, prefetch: int,
                 on_delivery: Callable[[Delivery], Any], span_name: str) -> None:
        self._connection, self._prefetch = connection, prefetch
        self._on_delivery, self._span_name = on_delivery, span_name
        self._channel: AbstractChannel | None = None
        self._queues: dict[str, tuple[AbstractQueue, str]] = {}

    async def start(self) -> None:
        self._channel = await self._connection.channel()
        await self._channel.set_qos(prefetch_count=self._prefetch)

    async def consume(self, queue_name: str, arguments: dict[str, Any] | None = None) -> None:
        assert self._channel is not None, "start() first"
        if queue_name in self._queues:
            return
        # declared (passively) on this robust channel, so that its consumer is restored after a reconnect
        queue = await self._channel.declare_queue(queue_name, passive=True)

        async def callback(raw: AbstractIncomingMessage) -> None:
            self._deliver(raw, queue_name)

        tag = await queue.consume(callback, arguments=arguments)
        self._queues[queue_name] = (queue, tag)
        for counter in (CONSUMED, ACKED, REQUEUED):  # exported at 0 from the start: every family has its series
            counter.labels(queue_family(queue_name))

    async def cancel(self, queue_name: str) -> None:
        """Stops consuming the queue; deliveries already received stay ours until settled."""
        entry = self._queues.pop(queue_name, None)
        if entry is not None:
            queue, tag = entry
            try:
                await queue.cancel(tag)
            except Exception as exc:  # noqa: BLE001 - the channel is gone: nothing is consumed anyway
                log.debug("cancelling the consumer of %s: %s", queue_name, exc)

    @property
    def queues(self) -> set[str]:
        return set(self._queues)

    @property
    def channel(self) -> AbstractChannel | None:
        """The consuming channel (readiness: it must be open)."""
        return self._channel

    async def close(self) -> None:
        for name in list(self._queues):
            await self.cancel(name)
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    def _deliver(self, raw: AbstractIncomingMessage, queue_name: str) -> None:
        headers = raw.headers or {}
        parent = propagate.extract({k: v for k, v in headers.items() if isinstance(v, str)})
        span = tracer.start_span(f"{queue_name} process", context=parent, kind=trace.SpanKind.CONSUMER,
                                 attributes={"messaging.system": "rabbitmq", "messaging.operation.type": "process",
                                             "messaging.destination.name": queue_name})
        try:
            attempt = int(headers.get(ATTEMPT_HEADER, 0)) + 1
        except (TypeError, ValueError):
            attempt = 1
        CONSUMED.labels(queue_family(queue_name)).inc()
        self._on_delivery(Delivery(raw, queue_name, attempt, parent, span))


class Publisher:
    """Confirmed, persistent, mandatory publishing on a channel of its own; the current trace goes along."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self._connection = connection
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}

    async def start(self) -> None:
        self._channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        assert self._channel is not None, "start() first"
        if name == "":
            return self._channel.default_exchange
        if name not in self._exchanges:
            self._exchanges[name] = await self._channel.get_exchange(name, ensure=False)
        return self._exchanges[name]

    async def publish(self, message: BaseModel | bytes, *, exchange: str = "", routing_key: str,
                      headers: dict[str, Any] | None = None, expiration_s: float | None = None,
                      message_id: str | None = None, context: otel_context.Context | None = None,
                      links: list[trace.Link] | None = None) -> None:
        """Returns once the broker confirmed; ``context``: the trace to publish in (default: the current one);
        ``links``: the spans a message shared by many events stands for."""
        body = message if isinstance(message, bytes) else message.model_dump_json().encode()
        target = exchange or routing_key
        with tracer.start_as_current_span(f"{target} publish", context=context, kind=trace.SpanKind.PRODUCER,
                                          links=links,
                                          attributes={"messaging.system": "rabbitmq",
                                                      "messaging.operation.type": "publish",
                                                      "messaging.destination.name": target}):
            carrier: dict[str, Any] = dict(headers or {})
            propagate.inject(carrier)
            await (await self._exchange(exchange)).publish(
                aio_pika.Message(body, headers=carrier, content_type="application/json",
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id,
                                 expiration=expiration_s),
                routing_key=routing_key, mandatory=True)
        PUBLISHED.labels(exchange or queue_family(routing_key)).inc()


class Batcher(Generic[T]):
    """Gathers items and hands them to ``flush`` in batches: once ``size`` items are there, or ``wait_s`` after the
    oldest waiting item arrived, or (with ``gap_s``) once no item came for ``gap_s``. At most ``concurrency`` flushes
    run at once; while they run, items keep gathering into the next batch. So a busy service batches more (items keep
    coming: the batch lingers up to ``wait_s``) and a quiet one waits only ``gap_s`` after its last item.

    ``flush`` owns its items: it settles each one (a raised error is logged, never swallowed silently)."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[None]], size: int, wait_s: float,
                 concurrency: int = 1, weight: Callable[[T], int] | None = None,
                 gap_s: float | None = None) -> None:
        """``weight``: how much of ``size`` an item counts for (default 1: size is a number of items)."""
        self._flush, self._size, self._wait_s = flush, max(1, size), max(0.0, wait_s)
        self._gap_s = min(self._wait_s, gap_s) if gap_s is not None else self._wait_s
        self._newest = 0.0  # loop time the newest waiting item arrived
        self._concurrency = max(1, concurrency)
        self._weight = weight or (lambda _: 1)
        self._items: list[T] = []
        self._load = 0
        self._oldest = 0.0  # loop time the oldest waiting item arrived
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    def add(self, item: T) -> None:
        self._newest = asyncio.get_running_loop().time()
        if not self._items:
            self._oldest = self._newest
        self._items.append(item)
        self._load += self._weight(item)
        self._pump()

    def __len__(self) -> int:
        return len(self._items)

    def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while self._items and len(self._tasks) < self._concurrency:
            now = loop.time()
            if self._load < self._size and now - self._oldest < self._wait_s and now - self._newest < self._gap_s:
                break
            batch, taken = [], 0
            while self._items and (not batch or taken + self._weight(self._items[0]) <= self._size):
                item = self._items.pop(0)
                batch.append(item)
                taken += self._weight(item)
            self._load -= taken
            self._oldest = loop.time()  # what stays behind has waited since now at the earliest: flush it soon
            task = loop.create_task(self._run(batch))
            self._tasks.add(task)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._items and len(self._tasks) < self._concurrency:
            self._timer = loop.call_at(min(self._oldest + self._wait_s, self._newest + self._gap_s), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    async def _run(self, items: list[T]) -> None:
        try:
            await self._flush(items)
        except Exception:  # noqa: BLE001 - flush settles its items; this is a bug worth a traceback
            log.exception("a batch of %d failed", len(items))
        finally:
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            self._pump()

    async def drain(self) -> None:
        """Flushes what is gathered and waits for every flush to end (at shutdown)."""
        self._wait_s = 0.0
        self._pump()
        while self._tasks or self._items:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            self._pump()
