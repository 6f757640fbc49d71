"""Okta user (and app-user) fields -> SCIM attribute values, as the connector's `attribute_mappings` say.

Sources: ``profile.<field>`` (the Okta user profile), ``credentials.userName`` (the app username; Okta's default
for SCIM ``userName``), ``appProfile.<field>`` (the app-user profile, when known), ``id`` (the Okta user id).
``emails`` takes an address and becomes Okta's ``[{value, type: work, primary: true}]``.
"""

from __future__ import annotations

from typing import Any

from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import MappedAttribute

__all__ = ["map_user"]


def _source(user: dict[str, Any], app_username: str | None, app_profile: dict[str, Any], source: str) -> Any:
    profile = user.get("profile") or {}
    if source == "id":
        return user.get("id")
    if source == "credentials.userName":
        return app_username or profile.get("login")
    if source.startswith("profile."):
        return profile.get(source.removeprefix("profile."))
    if source.startswith("appProfile."):
        return app_profile.get(source.removeprefix("appProfile."))
    return None


def map_user(app: AppConnector, user: dict[str, Any], app_username: str | None,
             app_profile: dict[str, Any] | None = None) -> tuple[tuple[MappedAttribute, ...], str]:
    """Returns the mapped attributes and the value of the app's unique user field."""
    attrs: list[MappedAttribute] = []
    for path, source in app.mappings.items():
        value = _source(user, app_username, app_profile or {}, source)
        if value is None:
            continue
        if path == "emails":
            value = [{"value": value, "type": "work", "primary": True}]
        attrs.append(MappedAttribute(path=path, value=value))
    unique = next((a.value for a in attrs if a.path == app.unique_user_field), None)
    if isinstance(unique, list):
        unique = unique[0]["value"] if unique else None
    if unique is None:
        unique = app_username or (user.get("profile") or {}).get("login") or user.get("id")
    return tuple(attrs), str(unique)
