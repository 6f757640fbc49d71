"""Ports of the scim-dispatcher."""

from __future__ import annotations

from typing import Protocol

from okta_bridge.contracts import ScimOperationPlanned
from okta_bridge.stores.links import Link

__all__ = ["Link", "LinkOwners", "LinkStore"]


class LinkStore(Protocol):
    async def get(self, app_id: str, user_id: str) -> Link | None: ...
    async def save(self, plan: ScimOperationPlanned, target_id: str | None, active: bool | None) -> bool:
        """Stores the link if ``plan.version`` is newer than the stored one; False when it was stale."""
        ...


class LinkOwners(Protocol):
    async def holder_of(self, app_id: str, target_id: str, other_than: str) -> str | None:
        """The Okta user, other than ``other_than``, whose link in this app holds the target account; None if none."""
        ...
