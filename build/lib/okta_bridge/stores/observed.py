"""What the services observe and ``bridgectl status`` shows, in MongoDB: the owner of ``observed``.

* circuits: a dispatcher writes an app's circuit when it opens or closes (one document per (org, app, dispatcher));
* Okta budget: an Okta client's last rate-limit headers per bucket, written at most every few seconds by the
  services that call Okta (one document per (org, process)).

Small, overwritten in place, and never on a change's path: a failed write is logged by the caller and tried again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from okta_bridge.mongo import key

__all__ = ["MongoObserved"]

STALE_BUDGET = timedelta(minutes=5)  # a process that stopped writing: its budget is not shown


class MongoObserved:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._db, self._org = db, org

    async def circuit(self, app_id: str, source: str, open_: bool, reason: str = "") -> None:
        await self._db.observed.update_one(
            {"_id": key(self._org, "circuit", app_id, source)},
            {"$set": {"org": self._org, "kind": "circuit", "app_id": app_id, "source": source, "open": open_,
                      "reason": reason[:300], "at": datetime.now(UTC)}}, upsert=True)

    async def budget(self, source: str, buckets: dict[str, dict[str, Any]]) -> None:
        await self._db.observed.update_one(
            {"_id": key(self._org, "budget", source)},
            {"$set": {"org": self._org, "kind": "budget", "source": source, "buckets": buckets,
                      "at": datetime.now(UTC)}}, upsert=True)

    async def open_circuits(self) -> list[dict[str, Any]]:
        return [{"app_id": d["app_id"], "dispatcher": d["source"], "reason": d.get("reason", ""), "since": d["at"]}
                async for d in self._db.observed.find({"org": self._org, "kind": "circuit", "open": True})]

    async def okta_budget(self) -> dict[str, dict[str, Any]]:
        """Per bucket, the lowest remaining any live process saw (the org's budget is shared)."""
        since = datetime.now(UTC) - STALE_BUDGET
        out: dict[str, dict[str, Any]] = {}
        async for d in self._db.observed.find({"org": self._org, "kind": "budget", "at": {"$gte": since}}):
            for bucket, v in (d.get("buckets") or {}).items():
                if bucket not in out or (v.get("remaining") or 0) < (out[bucket].get("remaining") or 0):
                    out[bucket] = {**v, "seen_by": d["source"], "at": d["at"]}
        return out
