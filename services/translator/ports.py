"""Ports of the translator (adapters in ``adapters/``; fakes in the unit tests)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, AsyncIterator, Protocol

from okta_bridge.contracts import ScimOperationPlanned
from okta_bridge.stores.assignments import Assignment, ListingFence, Take

__all__ = ["Assignment", "AssignmentStore", "ListingFence", "OktaReader", "PlanOutbox", "Take", "WritebackStore"]


class AssignmentStore(Protocol):
    async def take_version(self, app_id: str, user_id: str, *, assigned: bool | None = None,
                           app_username: str | None = None, as_of: int | None = None,
                           listing: ListingFence | None = None) -> Take:
        """Records a membership change if given, takes the next plan version of the key (before any Okta read),
        stamps it with the database's clock and returns the assignment row.

        ``listing``: the take is for a user listed on that page, and is ``trusted`` when no earlier plan of the key
        can hold data newer than the page: every earlier take was before the page was asked for, and every earlier
        take that read Okta was more than the window before (its read ended within the window of its take). An
        untrusted take reads Okta like any plan."""
        ...
    async def check(self, app_id: str, user_id: str) -> tuple[int, datetime]:
        """The key's newest plan version (0: none taken) and the database's time now."""
        ...
    async def now(self) -> datetime:
        """The database's clock: the one the takes are stamped with."""
        ...
    async def get(self, app_id: str, user_id: str) -> Assignment | None: ...
    async def for_user(self, user_id: str, app_ids: list[str]) -> list[Assignment]: ...
    async def set(self, app_id: str, user_id: str, *, assigned: bool | None = None,
                  app_username: str | None = None, sync_id: str | None = None) -> None: ...
    async def record_listing(self, app_id: str, rows: list[tuple[str, str | None]], sync_id: str,
                             as_of: int) -> None:
        """Marks the rows listed by this sync; a row takes the listing's assignment only when no membership event
        newer than ``as_of`` (Okta's time before the page was asked for, microseconds) was recorded."""
        ...
    async def unassign_missing(self, app_id: str, sync_id: str, as_of: int) -> list[str]:
        """Rows this sync did not list, assigned as of before ``as_of`` (Okta's time before the sync's first page):
        marked unassigned and returned. A row assigned by an event published since is left alone."""
        ...


class OktaReader(Protocol):
    def server_now(self) -> datetime: ...
    async def get_user(self, user_id: str) -> dict[str, Any]: ...
    def list_app_users(self, app_id: str) -> AsyncIterator[list[dict[str, Any]]]: ...
    async def update_app_user_profile(self, app_id: str, user_id: str, profile: dict[str, Any]) -> None: ...


class WritebackStore(Protocol):
    async def changed(self, app_id: str, user_id: str, values: dict[str, Any]) -> dict[str, Any]: ...
    async def remember(self, app_id: str, user_id: str, values: dict[str, Any]) -> None: ...


class PlanOutbox(Protocol):
    async def publish(self, plan: ScimOperationPlanned, pool: str) -> None: ...
