"""Recording what a service observes for ``bridgectl status`` (:mod:`okta_bridge.stores.observed`), off the path of
any change: the Okta budget at most every few seconds, circuit changes as they happen, each write in the background
and a failed one only logged."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any, Callable

log = logging.getLogger(__name__)

__all__ = ["CircuitRecorder", "record_budget", "source_name"]


def source_name(service: str) -> str:
    return f"{service}@{socket.gethostname()}:{os.getpid()}"


async def record_budget(observed, source: str, budget: Callable[[], dict[str, Any]], stop: asyncio.Event,
                        every_s: float = 5.0) -> None:
    """Writes the Okta client's last rate-limit headers when they changed, at most every ``every_s``."""
    last: dict[str, Any] | None = None
    while not stop.is_set():
        now = budget()
        if now and now != last:
            try:
                await observed.budget(source, now)
                last = now
            except Exception as exc:  # noqa: BLE001 - status only: tried again next time
                log.warning("could not record the Okta budget: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass


class CircuitRecorder:
    """``Circuits.on_change``: each open or close written in the background (never awaited by the dispatcher)."""

    def __init__(self, observed, source: str) -> None:
        self._observed, self._source = observed, source
        self._tasks: set[asyncio.Task] = set()

    def __call__(self, app_id: str, open_: bool, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self._write(app_id, open_, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, app_id: str, open_: bool, reason: str) -> None:
        try:
            await self._observed.circuit(app_id, self._source, open_, reason)
        except Exception as exc:  # noqa: BLE001 - status only
            log.warning("could not record the circuit of %s: %s", app_id, exc)
