"""Tiny async client for the target's /_admin API."""

from __future__ import annotations

from typing import Any

import httpx


class TargetAdmin:
    """``async with TargetAdmin("http://127.0.0.1:8050") as admin: await admin.users()``.
    Pass ``transport=httpx.ASGITransport(app)`` to drive an in-process app."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 10.0):
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/"), transport=transport,
                                        timeout=timeout)

    async def __aenter__(self) -> "TargetAdmin":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _json(self, method: str, url: str, **kwargs) -> Any:
        response = await self.client.request(method, url, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    async def requests(self, since: int = 0) -> list[dict]:
        """Logged SCIM requests with seq > since (each has seq, time, method, path, query,
        body (passwords redacted), status, response_body, fault, duration_ms)."""
        return (await self._json("GET", "/_admin/requests", params={"since": since}))["requests"]

    async def last_seq(self) -> int:
        return (await self._json("GET", "/_admin/requests", params={"since": 1 << 62}))["last_seq"]

    async def users(self) -> list[dict]:
        return await self._json("GET", "/_admin/users")

    async def groups(self) -> list[dict]:
        return await self._json("GET", "/_admin/groups")

    async def seed_user(self, user: dict) -> dict:
        return await self._json("POST", "/_admin/users", json=user)

    async def seed_group(self, group: dict) -> dict:
        return await self._json("POST", "/_admin/groups", json=group)

    async def reset(self) -> None:
        await self._json("POST", "/_admin/reset")

    async def add_fault(self, status: int | None = None, *, method: str | None = None,
                        path_regex: str | None = None, body: Any = None,
                        content_type: str | None = None, headers: dict[str, str] | None = None,
                        delay_s: float = 0.0, times: int | None = None,
                        empty_body: bool = False) -> dict:
        rule = {"status": status, "method": method, "path_regex": path_regex, "body": body,
                "content_type": content_type, "headers": headers or {}, "delay_s": delay_s,
                "times": times, "empty_body": empty_body}
        return (await self.add_faults([rule]))[0]

    async def add_faults(self, rules: list[dict]) -> list[dict]:
        return (await self._json("POST", "/_admin/faults", json=rules))["faults"]

    async def faults(self) -> list[dict]:
        return await self._json("GET", "/_admin/faults")

    async def clear_faults(self) -> None:
        await self._json("DELETE", "/_admin/faults")
