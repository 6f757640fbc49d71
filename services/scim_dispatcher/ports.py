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
    async def save(self, plan: ScimOperationPlanned, target_id: str | None, active: bool | None) -> bool:
        """Stores the link if ``plan.version`` is newer than the stored one; False when it was stale."""
        ...
