"""The dispatcher's HTTP clients: one pooled connection pool per distinct TLS setting of the apps
(:mod:`okta_bridge.http`); apps with the same ``tls`` share one.

Each SCIM request's client span is made by :class:`~scim_dispatcher.adapters.scim_client.ScimClient` itself, named and
described with the redacted path only (``/Users/{id}``, ``/Users?filter=<redacted>…``): a filter carries the userName
and ids may equal it, so the real URL is never recorded (a generic HTTP instrumentation would record it first).
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from okta_bridge.connectors import AppConnector
from okta_bridge.http import TlsSettings, pooled_transport, ssl_context

__all__ = ["app_clients", "traced_client"]


def traced_client(max_connections: int = 32, tls: TlsSettings | None = None, where: str = "tls") -> httpx.AsyncClient:
    """``max_connections``: the replica's in-flight limit."""
    return httpx.AsyncClient(transport=pooled_transport(max_connections, context=ssl_context(tls, where)))


def app_clients(apps: Iterable[AppConnector], max_connections: int = 32) -> dict[str, httpx.AsyncClient]:
    """A client per app id, shared by the apps whose ``tls`` is the same. A CA or client-certificate file that
    cannot be loaded fails here, at start, with the app's name."""
    by_tls: dict[TlsSettings, httpx.AsyncClient] = {}
    out: dict[str, httpx.AsyncClient] = {}
    for app in apps:
        if app.tls not in by_tls:
            by_tls[app.tls] = traced_client(max_connections, app.tls, f"{app.name}: tls")
        out[app.okta_app_id] = by_tls[app.tls]
    return out
