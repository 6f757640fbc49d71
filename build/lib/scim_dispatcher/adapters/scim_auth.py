"""Request headers for the connector's authorization kinds: ``header``, ``basic`` and ``none``."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

__all__ = ["auth_headers"]


def auth_headers(auth: Any) -> dict[str, str]:
    """Headers for ``auth``, which is either an object with a ``headers()`` method (the connectors file's
    ``HeaderAuth``/``BasicAuth``/``NoAuth``) or a mapping/object with resolved values:

    - ``{"type": "header", "header_name": "Authorization", "value": "Bearer …"}``
    - ``{"type": "basic", "username": "…", "password": "…"}``
    - ``{"type": "none"}``

    Values may be pydantic ``SecretStr``. Error messages name fields, never values.
    """
    if auth is None:
        return {}
    if callable(getattr(auth, "headers", None)) and not isinstance(auth, Mapping):
        return dict(auth.headers())
    kind = _field(auth, "type") or _field(auth, "kind")
    if kind == "none":
        return {}
    if kind == "header":
        name, value = _field(auth, "header_name") or "Authorization", _field(auth, "value")
        if not value:
            raise ValueError("header auth needs a value")
        return {name: value}
    if kind == "basic":
        username, password = _field(auth, "username"), _field(auth, "password")
        if username is None or password is None:
            raise ValueError("basic auth needs username and password")
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    raise ValueError(f"unknown auth type {kind!r}: expected 'header', 'basic' or 'none'")


def _field(auth: Any, name: str) -> str | None:
    value = auth.get(name) if isinstance(auth, Mapping) else getattr(auth, name, None)
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return None if value is None else str(value)
