"""Per-app circuit breaker for credentials that stopped working (401/403).

Open: the app's plans are parked in the pool's hold queue (a TTL loop back to the work queue: parked messages do
not count against the delivery limit) and the target is not called, except one probe per ``probe_interval_s``:
the first plan after the interval is tried; success closes the circuit and the backlog drains.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Circuits"]


@dataclass
class _State:
    opened_at: float | None = None
    last_probe: float = 0.0
    reason: str = ""


@dataclass
class Circuits:
    probe_interval_s: float = 10.0
    _apps: dict[str, _State] = field(default_factory=dict)

    def allow(self, app_id: str) -> bool:
        state = self._apps.get(app_id)
        if state is None or state.opened_at is None:
            return True
        now = time.monotonic()
        if now - state.last_probe >= self.probe_interval_s:
            state.last_probe = now
            return True
        return False

    def open(self, app_id: str, reason: str) -> None:
        state = self._apps.setdefault(app_id, _State())
        if state.opened_at is None:
            state.opened_at = time.monotonic()
        state.last_probe = time.monotonic()
        state.reason = reason

    def close(self, app_id: str) -> None:
        self._apps.pop(app_id, None)

    def reason(self, app_id: str) -> str:
        state = self._apps.get(app_id)
        return state.reason if state else ""

    def snapshot(self) -> dict[str, str]:
        return {app: "open: " + s.reason for app, s in self._apps.items() if s.opened_at is not None}
