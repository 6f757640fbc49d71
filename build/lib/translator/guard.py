"""The accidental-deactivation guard (Entra calls it accidental deletions prevention), applied to each batch's
plans before anything is published.

Every deactivating plan of an app whose guard is on (``guard.max_deactivations`` in its connector) is counted in
the app's window, whatever caused it (an unassignment, directly or through a group; deprovisioning or deletion in
Okta; a suspension under ``suspended: deactivate``; a full sync that no longer lists the user). Past the threshold
the app is paused: its deactivations are held (recorded in MongoDB, audited ``held`` / ``guard_held``, not sent),
while its other plans and every other app keep flowing. An operator releases them (the bridge looks at each held key
again, from Okta's state at that moment: a stale deactivation is never replayed) or discards them
(``bridgectl guard``). The count is shared by every translator replica (:mod:`okta_bridge.stores.guards`): one
database calls per app with deactivations per batch (create-if-missing, then one atomic update), plus one to
find released keys, never one per change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import PlanAction, Reason
from okta_bridge.metrics import GUARD_PAUSED
from okta_bridge.stores.guards import Held, Take
from translator.planning import KeyResult

__all__ = ["DeactivationGuard", "GuardStore"]


class GuardStore(Protocol):
    async def take(self, app_id: str, n: int, max_deactivations: int | str, window_s: int) -> Take: ...
    async def hold(self, held: list[Held]) -> None: ...
    async def released(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]: ...
    async def forget(self, keys: set[tuple[str, str]]) -> None: ...


@dataclass
class DeactivationGuard:
    apps: dict[str, AppConnector]
    store: GuardStore

    async def apply(self, results: list[KeyResult]) -> None:
        """Holds, in place, the deactivations past their app's threshold: their plan is taken away and their reason
        becomes ``guard_held``. A key an operator released goes out once, uncounted."""
        deactivating = [r for r in results if r.plan is not None and r.plan.action is PlanAction.DEACTIVATE
                        and self.apps[r.work.app_id].guard.max_deactivations is not None]
        if not deactivating:
            return
        released = await self.store.released([r.work.key for r in deactivating])
        by_app: dict[str, list[KeyResult]] = {}
        for r in deactivating:
            if r.work.key not in released:
                by_app.setdefault(r.work.app_id, []).append(r)
        held: list[KeyResult] = []
        for app_id, rs in sorted(by_app.items()):
            guard = self.apps[app_id].guard
            take = await self.store.take(app_id, len(rs), guard.max_deactivations, guard.window_s)
            GUARD_PAUSED.labels(self.apps[app_id].name).set(1 if take.paused else 0)
            for r in rs[take.allowed:]:
                r.detail = (f"held by the deactivation guard ({take.count} deactivations in the window, threshold "
                            f"{take.limit}): release or discard with bridgectl guard ({r.detail})")
                held.append(r)
        await self.store.hold([Held(r.work.app_id, r.work.user_id, r.version, r.work.cause,
                                    r.plan.event_uuid if r.plan else None) for r in held])
        for r in held:
            r.plan, r.reason = None, Reason.GUARD_HELD
        await self.store.forget(released)


async def refresh_paused(store, apps: dict[str, AppConnector], stop, every_s: float = 30.0) -> None:
    """Keeps ``bridge_guard_paused`` in line with MongoDB (an operator's release or discard happens elsewhere)."""
    import asyncio
    import logging

    while not stop.is_set():
        try:
            paused = {g.app_id for g in await store.states() if g.paused}
            for app_id, app in apps.items():
                GUARD_PAUSED.labels(app.name).set(1 if app_id in paused else 0)
        except Exception:  # noqa: BLE001 - a gauge is not worth stopping for; tried again
            logging.getLogger("translator").warning("guard gauge: MongoDB not readable; tried again", exc_info=True)
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass
