"""What the console's pages show, read from where the services record it (the same sources as ``bridgectl status``:
MongoDB for leases, circuits, budgets, guards and the audit trail; RabbitMQ's queue counts for backlogs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from okta_bridge.connectors import AppConnector, ConnectorsFile
from okta_bridge.contracts import AuditStep
from okta_bridge.stores.audit import AuditStore
from okta_bridge.stores.guards import MongoGuards
from okta_bridge.stores.observed import MongoObserved
from okta_bridge.topology import hold_queue_name, pool_names, retry_queue_name, RETRY_TIERS_MS

__all__ = ["Reader", "FAILURE_STEPS"]

FAILURE_STEPS = (AuditStep.DEAD_LETTERED,)  # a change that failed for good; a retried attempt is counted apart
SUCCESS_STEPS = (AuditStep.APPLIED, AuditStep.SKIPPED, AuditStep.SKIPPED_STALE)  # the other ends of a change
WINDOW = timedelta(hours=1)


class Reader:
    def __init__(self, db: AsyncDatabase, org: str, connectors: ConnectorsFile) -> None:
        self.db, self.org, self.connectors = db, org, connectors
        self.audit = AuditStore(db)
        self.observed = MongoObserved(db, org)
        self.guards = MongoGuards(db, org)

    def app(self, name_or_id: str) -> AppConnector | None:
        return next((a for a in self.connectors.apps if name_or_id in (a.name, a.okta_app_id)), None)

    def app_names(self) -> dict[str, str]:
        return {a.okta_app_id: a.name for a in self.connectors.apps}

    async def apps(self, with_backlog: bool = True) -> list[dict[str, Any]]:
        """Every configured app: health, its pool's backlog, error rate and last success (last hour), circuit, guard."""
        circuits = await self.observed.open_circuits()
        guards = {g.app_id: g for g in await self.guards.states()}
        backlog = await self.backlogs() if with_backlog else {}
        since = datetime.now(UTC) - WINDOW
        out = []
        for a in self.connectors.apps:
            activity = await self.audit.app_activity(a.okta_app_id, since)
            counts = activity["counts"]
            # a change ends applied, skipped or dead-lettered; a failed attempt is recorded `failed` and `retried`
            # (and `failed` again beside `dead_lettered` at the end), so only the ends are counted here
            failures = sum(counts.get(step.value, 0) for step in FAILURE_STEPS)
            done = failures + sum(counts.get(step.value, 0) for step in SUCCESS_STEPS)
            circuit = next((c for c in circuits if c["app_id"] == a.okta_app_id), None)
            guard = guards.get(a.okta_app_id)
            if circuit:
                health = "down"
                why = f"circuit open since {circuit['since']:%H:%M:%S}: {circuit['reason']}"
            elif guard and guard.paused:
                health, why = "paused", f"deactivation guard paused: {guard.held} held"
            elif failures:
                health, why = "failing", f"{failures} change(s) dead-lettered in the last hour"
            else:
                health, why = "ok", ""
            out.append({"name": a.name, "app_id": a.okta_app_id, "pool": a.pool, "scim": a.version,
                        "health": health, "why": why, "circuit": circuit,
                        "guard": guard, "guard_threshold": a.guard.max_deactivations, "guard_window_s": a.guard.window_s,
                        "backlog": backlog.get(a.pool), "counts": counts,
                        "error_rate": (failures / done) if done else None,
                        "retries": counts.get(AuditStep.RETRIED.value, 0),
                        "last_applied_at": activity["last_applied_at"],
                        "last_applied_trace": activity["last_applied_trace"]})
        return out

    async def backlogs(self) -> dict[str, int | None]:
        """Per pool: messages waiting in its partition, retry and hold queues (RabbitMQ passive declares)."""
        from bridgectl.status import queue_counts

        pools = {p: self.connectors.partitions(p) for p in self.connectors.pool_names()}
        try:
            counts = await queue_counts(pools)
        except Exception:  # noqa: BLE001 - the broker is away: the page says unknown
            return {}
        out: dict[str, int | None] = {}
        for pool, count in pools.items():
            names = list(pool_names(pool, count)[1])
            names += [retry_queue_name(f"plans.{pool}", t) for t in range(len(RETRY_TIERS_MS))]
            names += [hold_queue_name(f"plans.{pool}")]
            out[pool] = sum((counts.get(n) or {}).get("messages") or 0 for n in names)
        return out

    async def budget_problem(self, reserve: float) -> str | None:
        """Why a preview or provision must wait: a bucket it reads from is below ``reserve`` of its limit."""
        budget = await self.observed.okta_budget()
        for bucket in ("user", "apps", "users"):
            b = budget.get(bucket)
            if not b or not b.get("limit"):
                continue
            if (b.get("remaining") or 0) < reserve * b["limit"]:
                reset = b.get("reset")
                when = f" (its window resets at {datetime.fromtimestamp(reset, UTC):%H:%M:%S} UTC)" if reset else ""
                return (f"Okta's {bucket} budget is low: {b.get('remaining')} of {b['limit']} left{when}; the "
                        "services need it, try again after the reset")
        return None
