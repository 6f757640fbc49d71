"""Ports of the translator (adapters in ``okta_bridge.stores`` and ``okta_bridge.okta_client``; fakes in the unit
tests)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, AsyncIterator, Iterable, Protocol

from opentelemetry.context import Context

from okta_bridge.contracts import GroupPlanned, MembershipPlanned, ScimOperationPlanned
from okta_bridge.stores.assignments import Assignment, Commit, Landing, MembershipChange, Row

__all__ = ["Assignment", "AssignmentStore", "Commit", "MembershipChange", "OktaReader", "PlanOutbox", "Row",
           "WritebackStore"]


class AssignmentStore(Protocol):
    async def read_rows(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Row]:
        """The rows of these keys (a key without a row reads as version 0, unassigned)."""
        ...

    async def commit(self, commits: list[Commit]) -> list[Landing]:
        """Per commit: stored (the new version, the read's lastUpdated, the membership change) only if the row is as
        it was read and no earlier plan was built from newer user data (``LANDED``); ``CHANGED`` otherwise (read it
        again); ``REFUSED`` when the database refused that one write (the others of the batch stand)."""
        ...

    async def for_users(self, user_ids: Iterable[str], app_ids: Iterable[str]) -> dict[str, list[Assignment]]: ...
    async def record_listing(self, app_id: str, rows: list[tuple[str, str | None]], sync_id: str,
                             as_of: int, profiles: dict[str, dict[str, Any]] | None = None) -> None: ...
    async def merge_app_profile(self, app_id: str, user_id: str, values: dict[str, Any], as_of: int) -> None: ...
    async def unassign_missing(self, app_id: str, sync_id: str, as_of: int) -> list[str]: ...


class OktaReader(Protocol):
    def server_now(self) -> datetime: ...
    async def get_users(self, user_ids: list[str]) -> dict[str, dict[str, Any] | None]: ...
    async def list_users_by_ids(self, user_ids: list[str]) -> dict[str, dict[str, Any]]: ...
    async def get_app_user(self, app_id: str, user_id: str) -> dict[str, Any]:
        """``GET /api/v1/apps/{appId}/users/{userId}`` (the apps bucket); OktaNotFoundError when not assigned."""
        ...
    def list_app_users(self, app_id: str) -> AsyncIterator[list[dict[str, Any]]]: ...
    async def update_app_user_profile(self, app_id: str, user_id: str, profile: dict[str, Any]) -> None: ...


class WritebackStore(Protocol):
    async def changed(self, app_id: str, user_id: str, values: dict[str, Any]) -> dict[str, Any]: ...
    async def remember(self, app_id: str, user_id: str, values: dict[str, Any]) -> None: ...


class PlanOutbox(Protocol):
    async def publish(self, plan: ScimOperationPlanned | GroupPlanned | MembershipPlanned, pool: str,
                      context: Context | None = None) -> None:
        """Confirmed by the broker; routed to the key's partition of the pool; published in ``context``'s trace."""
        ...
