"""Audit records are written in batches: each consumed message waits for the ``insert_many`` that carries it,
and is acknowledged only after that write (so a crash loses nothing and a write error requeues the batch)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from opentelemetry import context as otel_context
from opentelemetry import trace

log = logging.getLogger(__name__)
tracer = trace.get_tracer("audit_recorder")

__all__ = ["Batcher"]


class Batcher:
    def __init__(self, write: Callable[[list[dict[str, Any]]], Awaitable[None]], max_size: int = 500,
                 max_delay_s: float = 0.2) -> None:
        self._write, self._max_size, self._max_delay = write, max_size, max_delay_s
        self._items: list[tuple[dict[str, Any], asyncio.Future, trace.SpanContext]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.batches = 0

    async def add(self, doc: dict[str, Any]) -> None:
        future = asyncio.get_running_loop().create_future()
        self._items.append((doc, future, trace.get_current_span().get_span_context()))
        if len(self._items) >= self._max_size:
            # taken now, so a record that arrives before the write starts opens the next batch instead of riding
            # along and leaving a partial tail behind that would wait for the delay
            asyncio.ensure_future(self._write_batch(self._take()))
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._max_delay, lambda: asyncio.ensure_future(self.flush()))
        await future

    def _take(self) -> list[tuple[dict[str, Any], asyncio.Future, trace.SpanContext]]:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._items = self._items, []
        return items

    async def flush(self) -> None:
        await self._write_batch(self._take())

    async def _write_batch(self, items: list[tuple[dict[str, Any], asyncio.Future, trace.SpanContext]]) -> None:
        if not items:
            return
        links = [trace.Link(ctx) for _, _, ctx in items if ctx.is_valid][:128]
        # shared by many events: its own trace, linked to each record's consume span (not a child of the first)
        with tracer.start_as_current_span("audit insert_many", context=otel_context.Context(), links=links) as span:
            span.set_attribute("audit.batch.size", len(items))
            try:
                await self._write([doc for doc, _, _ in items])
            except Exception as exc:  # noqa: BLE001 - every waiting message is nacked and redelivered
                log.warning("audit batch of %d failed: %s", len(items), exc)
                for _, future, _ in items:
                    if not future.done():
                        future.set_exception(exc)
                return
        self.batches += 1
        for _, future, _ in items:
            if not future.done():
                future.set_result(None)
