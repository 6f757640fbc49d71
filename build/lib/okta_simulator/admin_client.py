"""Async client for the simulator's `/_admin` API; each method returns the ids it created or touched."""
from __future__ import annotations

import json

import httpx

BULK_TIMEOUT = 120.0  # seconds for a bulk call (10,000 users take a few)


class SimulatorAdmin:
    def __init__(self, base_url: str, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=10.0)

    async def __aenter__(self) -> "SimulatorAdmin":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, json: dict | None = None, **kwargs) -> dict | list:
        response = await self._client.request(method, f"/_admin{path}", json=json, **kwargs)
        response.raise_for_status()
        return response.json()

    async def create_user(self, profile: dict, status: str = "ACTIVE") -> str:
        return (await self._call("POST", "/users", {"profile": profile, "status": status}))["id"]

    async def create_users(self, profiles: list[dict], status: str = "ACTIVE") -> list[str]:
        """Many users in one call (each as `create_user`, same events); their ids in the order given."""
        body = {"users": [{"profile": p, "status": status} for p in profiles]}
        return (await self._call("POST", "/users/bulk", body, timeout=BULK_TIMEOUT))["ids"]

    async def update_profile(self, user_id: str, profile: dict) -> str:
        return (await self._call("POST", f"/users/{user_id}/profile", {"profile": profile}))["id"]

    async def paced_profile_updates(self, updates: list[tuple[str, dict]], rate_per_s: float) -> dict:
        """The simulator makes the updates itself, one every 1/rate s: ``{"scheduled", "started_at"}``."""
        return await self._call("POST", "/users/profile-updates/paced",
                                {"updates": [{"id": u, "profile": p} for u, p in updates], "rate_per_s": rate_per_s})

    async def paced_status(self) -> dict:
        """``{"total", "done", "started_at", "finished_at", "running"}`` of the last paced run."""
        return await self._call("GET", "/users/profile-updates/paced")

    async def set_password(self, user_id: str, password: str) -> str:
        """The password the user signs in with at `/oauth2/v1/authorize` (okta_simulator.oidc)."""
        return (await self._call("POST", f"/users/{user_id}/password", {"password": password}))["id"]

    async def lifecycle(self, user_id: str, action: str) -> str:
        """action: activate | deactivate | reactivate | suspend | unsuspend; returns the new status."""
        return (await self._call("POST", f"/users/{user_id}/lifecycle/{action}"))["status"]

    async def deactivate_user(self, user_id: str) -> str:
        return await self.lifecycle(user_id, "deactivate")

    async def reactivate_user(self, user_id: str) -> str:
        return await self.lifecycle(user_id, "reactivate")

    async def activate_user(self, user_id: str) -> str:
        return await self.lifecycle(user_id, "activate")

    async def suspend_user(self, user_id: str) -> str:
        return await self.lifecycle(user_id, "suspend")

    async def unsuspend_user(self, user_id: str) -> str:
        return await self.lifecycle(user_id, "unsuspend")

    async def delete_user(self, user_id: str) -> str:
        return (await self._call("DELETE", f"/users/{user_id}"))["id"]

    async def create_app(self, label: str, name: str | None = None, provisioning: bool = False) -> str:
        """`provisioning=True`: an app Okta provisions itself, the only kind with group push mappings."""
        body = {"label": label, "name": name, "provisioning": provisioning}
        return (await self._call("POST", "/apps", body))["id"]

    async def assign_user(self, app_id: str, user_id: str, user_name: str | None = None,
                          profile: dict | None = None) -> str:
        """Returns the app user's `0ua…` id (the System Log's AppUser target)."""
        body = {"userId": user_id, "userName": user_name, "profile": profile or {}}
        return (await self._call("POST", f"/apps/{app_id}/users", body))["appUserId"]

    async def assign_users(self, app_id: str, user_ids: list[str]) -> int:
        """Each user assigned as `assign_user` does (one `application.user_membership.add` each); returns how many
        assignments were made."""
        body = {"user_ids": user_ids}
        return (await self._call("POST", f"/apps/{app_id}/users/bulk", body, timeout=BULK_TIMEOUT))["assigned"]

    async def unassign_user(self, app_id: str, user_id: str) -> str:
        return (await self._call("DELETE", f"/apps/{app_id}/users/{user_id}"))["id"]

    async def change_app_username(self, app_id: str, user_id: str, user_name: str) -> str:
        return (await self._call("POST", f"/apps/{app_id}/users/{user_id}/username", {"userName": user_name}))["id"]

    async def update_app_user_profile(self, app_id: str, user_id: str, profile: dict,
                                      event_type: str = "application.user_membership.update") -> str:
        """`event_type`: or `directory.app_user_profile.update`."""
        body = {"profile": profile, "eventType": event_type}
        return (await self._call("POST", f"/apps/{app_id}/users/{user_id}/profile", body))["id"]

    async def restore_assignment(self, app_id: str, user_id: str) -> str:
        """Writes `application.user_membership.restore` for an existing assignment; changes nothing."""
        return (await self._call("POST", f"/apps/{app_id}/users/{user_id}/restore"))["id"]

    async def update_primary_email(self, user_id: str, email: str) -> str:
        """Changes `profile.email` with only `user.account.update_primary_email` written."""
        return (await self._call("POST", f"/users/{user_id}/primary-email", {"email": email}))["id"]

    async def create_group(self, name: str, description: str = "") -> str:
        return (await self._call("POST", "/groups", {"name": name, "description": description}))["id"]

    async def update_group(self, group_id: str, name: str | None = None, description: str | None = None) -> str:
        body = {"name": name, "description": description}
        return (await self._call("POST", f"/groups/{group_id}/profile", body))["id"]

    async def delete_group(self, group_id: str) -> str:
        return (await self._call("DELETE", f"/groups/{group_id}"))["id"]

    async def add_group_member(self, group_id: str, user_id: str) -> str:
        return (await self._call("PUT", f"/groups/{group_id}/users/{user_id}"))["id"]

    async def remove_group_member(self, group_id: str, user_id: str) -> str:
        return (await self._call("DELETE", f"/groups/{group_id}/users/{user_id}"))["id"]

    async def assign_group(self, app_id: str, group_id: str) -> str:
        return (await self._call("PUT", f"/apps/{app_id}/groups/{group_id}"))["id"]

    async def unassign_group(self, app_id: str, group_id: str) -> str:
        return (await self._call("DELETE", f"/apps/{app_id}/groups/{group_id}"))["id"]

    async def add_oidc_client(self, client_id: str, client_secret: str, redirect_uris: list[str],
                              groups_claim_filter: str = ".*", *,
                              post_logout_redirect_uris: list[str] | None = None) -> str:
        """Registers an OIDC web app (sign-in with the authorization code flow and PKCE); returns its client id.
        `groups_claim_filter`: a regex the names of the `groups` claim must match in full."""
        body = {"client_id": client_id, "client_secret": client_secret, "redirect_uris": redirect_uris,
                "groups_claim_filter": groups_claim_filter,
                "post_logout_redirect_uris": post_logout_redirect_uris or []}
        return (await self._call("POST", "/oidc/clients", body))["client_id"]

    async def reject_cursors(self) -> None:
        await self._call("POST", "/faults/reject-cursors")

    async def expire_before(self, before_iso: str) -> int:
        return (await self._call("POST", "/faults/expire", {"before": before_iso}))["dropped"]

    async def inject(self, bucket: str = "*", status: int | None = 429, count: int = 1, *, delay_s: float = 0.0,
                     path_regex: str | None = None, edit: str | None = None, reset_s: float | None = None) -> None:
        """``status`` instead of the answer, or (``status=None``) the answer itself, computed now, ``delay_s`` late
        and/or changed by ``edit`` (``drop_first`` | ``repeat_first`` | ``add_unasked``; `GET /api/v1/users` only)."""
        await self._call("POST", "/faults/inject", {"bucket": bucket, "status": status, "count": count,
                                                    "delay_s": delay_s, "path_regex": path_regex, "edit": edit,
                                                    "reset_s": reset_s})

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/faults")

    async def set_plan(self, plan: str, token_share: float | None = None) -> dict:
        return await self._call("POST", "/plan", {"plan": plan, "tokenShare": token_share})

    async def set_max_url_bytes(self, max_url_bytes: int) -> int:
        """Requests whose path + query is longer are answered 414 from now on."""
        return (await self._call("POST", "/limits", {"maxUrlBytes": max_url_bytes}))["maxUrlBytes"]

    async def limits(self) -> dict:
        return await self._call("GET", "/limits")

    async def stats(self) -> dict:
        return await self._call("GET", "/stats")

    async def events(self) -> list[dict]:
        return await self._call("GET", "/events")

    async def append_raw_event(self, event: object) -> None:
        """Appends `event` to the System Log as is: any JSON value, malformed or of an unknown type."""
        response = await self._client.post("/_admin/events/raw", content=json.dumps(event),
                                            headers={"Content-Type": "application/json"})
        response.raise_for_status()

    async def reset(self) -> str:
        return (await self._call("POST", "/reset"))["adminUserId"]
