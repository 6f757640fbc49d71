"""Ports of the queue-poller (implemented in ``adapters/``, faked in unit tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from okta_bridge.contracts import OktaEventReceived, SyncReason


@dataclass
class CursorState:
    next_link: str | None
    last_success_at: datetime | None
    known_apps: list[str]


class LogSource(Protocol):
    def polling_link(self, since: datetime) -> str: ...
    async def fetch(self, link: str) -> tuple[list[Any], str | None]: ...


class StateStore(Protocol):
    async def load(self) -> CursorState | None: ...
    async def save(self, state: CursorState) -> None: ...
    async def unseen(self, uuids: list[str]) -> set[str]: ...
    async def mark_seen(self, uuids: list[str]) -> None: ...
    async def users_with_assignments(self, user_ids: list[str], app_ids: list[str]) -> set[str]: ...


class Outbox(Protocol):
    async def publish_event(self, event: OktaEventReceived, poll_span_context: Any) -> None: ...
    async def request_sync(self, app_id: str, reason: SyncReason) -> None: ...
    async def dead_letter(self, raw: Any, reason: str) -> None: ...
