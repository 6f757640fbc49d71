"""In-flight accounting: per tenant and over all tenants, how many SCIM requests are being processed right now
(from arrival until the last byte of the answer is handed over, latency included) and the peak since the start
or the last reset."""

from __future__ import annotations

from dataclasses import dataclass, field

from .tenants import ALL


@dataclass
class Gauge:
    current: int = 0
    peak: int = 0

    def enter(self) -> None:
        self.current += 1
        self.peak = max(self.peak, self.current)

    def leave(self) -> None:
        self.current -= 1


@dataclass
class Inflight:
    tenants: dict[str, Gauge] = field(default_factory=dict)
    everyone: Gauge = field(default_factory=Gauge)

    def enter(self, tenant: str) -> None:
        self.tenants.setdefault(tenant, Gauge()).enter()
        self.everyone.enter()

    def leave(self, tenant: str) -> None:
        self.tenants[tenant].leave()
        self.everyone.leave()

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{"<tenant>": {"current": n, "peak": n}, ..., "*": <over all tenants>}``."""
        gauges = {**self.tenants, ALL: self.everyone}
        return {name: {"current": g.current, "peak": g.peak} for name, g in gauges.items()}

    def reset_peaks(self) -> None:
        for gauge in (*self.tenants.values(), self.everyone):
            gauge.peak = gauge.current
