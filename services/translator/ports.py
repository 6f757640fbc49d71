"""Ports of the translator (adapters in ``adapters/``; fakes in the unit tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol

from okta_bridge.contracts import ScimOperationPlanned


@dataclass(frozen=True)
class Assignment:
    app_id: str
    user_id: str
    app_username: str | None
    assigned: bool


class AssignmentStore(Protocol):
    async def next_version_and_get(self, app_id: str, user_id: str, *, assigned: bool | None = None,
                                   app_username: str | None = None,
                                   as_of: int | None = None) -> tuple[int, Assignment | None]:
        """Records a membership change if given, takes the next plan version of the key (before any Okta read)
        and returns its assignment row."""
        ...
    async def get(self, app_id: str, user_id: str) -> Assignment | None: ...
    async def for_user(self, user_id: str, app_ids: list[str]) -> list[Assignment]: ...
    async def set(self, app_id: str, user_id: str, *, assigned: bool | None = None,
                  app_username: str | None = None, sync_id: str | None = None) -> None: ...
    async def record_listing(self, app_id: str, rows: list[tuple[str, str | None]], sync_id: str) -> None: ...
    async def unassign_missing(self, app_id: str, sync_id: str) -> list[str]: ...


class OktaReader(Protocol):
    async def get_user(self, user_id: str) -> dict[str, Any]: ...
    def list_app_users(self, app_id: str) -> AsyncIterator[list[dict[str, Any]]]: ...
    async def update_app_user_profile(self, app_id: str, user_id: str, profile: dict[str, Any]) -> None: ...


class WritebackStore(Protocol):
    async def changed(self, app_id: str, user_id: str, values: dict[str, Any]) -> dict[str, Any]: ...
    async def remember(self, app_id: str, user_id: str, values: dict[str, Any]) -> None: ...


class PlanOutbox(Protocol):
    async def publish(self, plan: ScimOperationPlanned, pool: str) -> None: ...
