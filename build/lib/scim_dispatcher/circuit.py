"""Per-app circuit breaker: for credentials that stopped working (401/403, at once) and for a target that is down
(``failure_threshold`` transient failures in a row: 5xx, 429, timeouts, refused connections).

Open: the app's plans are parked in the pool's hold queue (a TTL loop back to the work queue: parked messages do
not count against the delivery limit) and the target is not called, except one probe per ``probe_interval_s``:
the first plan after the interval is tried; success closes the circuit and the backlog drains.

Each opening and each closing is one log line naming the app by its connector name (a down target is otherwise
silent while its plans wait), never one per plan.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from prometheus_client import Gauge

from okta_bridge.outcomes import Circuit, CircuitEffect

__all__ = ["CIRCUIT_OPEN", "Circuits"]

log = logging.getLogger("scim_dispatcher.circuit")

CIRCUIT_OPEN = Gauge("bridge_dispatcher_circuit_open", "1 while the app's circuit is open (target calls stopped)",
                     ["app"])


@dataclass
class _State:
    opened_at: float | None = None
    last_probe: float = 0.0
    reason: str = ""
    failures: int = 0


@dataclass
class Circuits:
    probe_interval_s: float = 10.0
    failure_threshold: int = 5
    names: dict[str, str] = field(default_factory=dict)  # app id -> app name, for the metric's label
    # told when a circuit opens or closes (app id, open, reason): the dispatcher records it for ``bridgectl status``
    on_change: Callable[[str, bool, str], None] | None = None
    _apps: dict[str, _State] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.names.values():  # every app's gauge exported from the start (closed), not after a failure
            CIRCUIT_OPEN.labels(name).set(0)

    def failure(self, app_id: str, reason: str) -> bool:
        """A transient failure; True when the circuit is (now) open, so the plan is held instead of retried."""
        state = self._apps.setdefault(app_id, _State())
        state.failures += 1
        if state.opened_at is None and state.failures >= self.failure_threshold:
            self.open(app_id, f"target unreachable ({state.failures} failures in a row): {reason}")
        return state.opened_at is not None

    def view(self, app_id: str) -> Circuit:
        """The app's circuit as the outcome policy sees it."""
        state = self._apps.get(app_id)
        if state is None:
            return Circuit(False, 0, self.failure_threshold)
        return Circuit(state.opened_at is not None, state.failures, self.failure_threshold)

    def apply(self, app_id: str, effect: CircuitEffect, reason: str = "") -> None:
        """What the outcome policy decided for the app's circuit."""
        if effect is CircuitEffect.CLOSE:
            self.close(app_id)
        elif effect is CircuitEffect.OPEN:
            self._apps.setdefault(app_id, _State()).failures += 1
            self.open(app_id, reason or self.reason(app_id))
        elif effect is CircuitEffect.FAILURE:
            self._apps.setdefault(app_id, _State()).failures += 1

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
            log.warning("circuit of app %s opened: target calls stop, its plans are held (a probe every %.0f s): %s",
                        self.names.get(app_id, app_id), self.probe_interval_s, reason)
            if self.on_change is not None:
                self.on_change(app_id, True, reason)
        state.last_probe = time.monotonic()
        state.reason = reason
        CIRCUIT_OPEN.labels(self.names.get(app_id, app_id)).set(1)

    def close(self, app_id: str) -> None:
        state = self._apps.pop(app_id, None)
        if state is not None:
            CIRCUIT_OPEN.labels(self.names.get(app_id, app_id)).set(0)
            if state.opened_at is not None:
                log.info("circuit of app %s closed after %.0f s: the target answered, held plans go through",
                            self.names.get(app_id, app_id), time.monotonic() - state.opened_at)
            if state.opened_at is not None and self.on_change is not None:
                self.on_change(app_id, False, "")

    def reason(self, app_id: str) -> str:
        state = self._apps.get(app_id)
        return state.reason if state else ""

    def snapshot(self) -> dict[str, str]:
        return {app: "open: " + s.reason for app, s in self._apps.items() if s.opened_at is not None}
