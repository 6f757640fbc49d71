"""The dispatcher's HTTP client: one pooled connection pool for every app (:mod:`okta_bridge.http`).

Each SCIM request's client span is made by :class:`~scim_dispatcher.adapters.scim_client.ScimClient` itself, named and
described with the redacted path only (``/Users/{id}``, ``/Users?filter=<redacted>…``): a filter carries the userName
and ids may equal it, so the real URL is never recorded (a generic HTTP instrumentation would record it first).
"""

from __future__ import annotations

import httpx

from okta_bridge.http import pooled_transport

__all__ = ["traced_client"]


def traced_client(max_connections: int = 32) -> httpx.AsyncClient:
    """``max_connections``: the replica's in-flight limit."""
    return httpx.AsyncClient(transport=pooled_transport(max_connections))
