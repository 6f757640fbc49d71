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
        """Logged SCIM requests with seq > since (each has seq, time, method, path, tenant, query,
        body (passwords redacted), status, response_body, fault, duration_ms)."""
        return (await self._json("GET", "/_admin/requests", params={"since": since}))["requests"]

    async def last_seq(self) -> int:
        return (await self._json("GET", "/_admin/requests", params={"since": 1 << 62}))["last_seq"]

    @staticmethod
    def _tenant(tenant: str | None) -> dict[str, str]:
        return {} if tenant is None else {"tenant": tenant}

    async def users(self, tenant: str | None = None) -> list[dict]:
        """The users of ``tenant`` (None: the default tenant, the un-prefixed `/scim/…` paths)."""
        return await self._json("GET", "/_admin/users", params=self._tenant(tenant))

    async def groups(self, tenant: str | None = None) -> list[dict]:
        return await self._json("GET", "/_admin/groups", params=self._tenant(tenant))

    async def seed_user(self, user: dict, tenant: str | None = None) -> dict:
        return await self._json("POST", "/_admin/users", json=user, params=self._tenant(tenant))

    async def seed_group(self, group: dict, tenant: str | None = None) -> dict:
        return await self._json("POST", "/_admin/groups", json=group, params=self._tenant(tenant))

    async def reset(self, tenant: str | None = None) -> None:
        """None: the default tenant's store, the request log and the fault rules; a name: only that
        tenant's store; ``"*"``: every tenant's store, the log and the fault rules."""
        await self._json("POST", "/_admin/reset", params=self._tenant(tenant))

    async def config(self) -> dict:
        """``{"name", "quirks", "latency_ms", "log_entries"}``."""
        return await self._json("GET", "/_admin/config")

    async def set_latency(self, ms: int) -> dict:
        """Every SCIM answer from now on waits ``ms`` milliseconds; returns the config."""
        return await self._json("POST", "/_admin/config", json={"latency_ms": ms})

    async def inflight(self) -> dict[str, dict[str, int]]:
        """``{"<tenant>": {"current": n, "peak": n}, ..., "*": {...all tenants...}}``."""
        return await self._json("GET", "/_admin/inflight")

    async def reset_inflight(self) -> dict[str, dict[str, int]]:
        """Peaks back to the current values; returns the gauges."""
        return await self._json("POST", "/_admin/inflight/reset")

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
