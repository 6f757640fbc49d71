"""Ports of the scim-dispatcher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from okta_bridge.contracts import ScimOperationPlanned


@dataclass(frozen=True)
class Link:
    """Okta user <-> target account, and the newest plan version applied for the key."""

    target_id: str | None
    applied_version: int
    active: bool | None


class LinkStore(Protocol):
    async def get(self, app_id: str, user_id: str) -> Link | None: ...
    async def save(self, plan: ScimOperationPlanned, target_id: str | None, active: bool | None,
                   release_owner: str | None = None) -> bool:
        """Stores the link if ``plan.version`` is newer than the stored one; False when it was stale.
        ``release_owner``: frees that holder's lease on the link in the same write (see mongo_links)."""
        ...
