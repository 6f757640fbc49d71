"""Ports of the scim-dispatcher."""

from __future__ import annotations

from typing import Protocol

from okta_bridge.contracts import ScimOperationPlanned
from okta_bridge.stores.links import Link

__all__ = ["Link", "LinkStore"]


class LinkStore(Protocol):
    async def get(self, app_id: str, user_id: str) -> Link | None: ...
    async def save(self, plan: ScimOperationPlanned, target_id: str | None, active: bool | None) -> bool:
        """Stores the link if ``plan.version`` is newer than the stored one; False when it was stale."""
        ...
