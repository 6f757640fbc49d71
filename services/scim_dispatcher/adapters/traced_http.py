"""The dispatcher's HTTP client, traced by OpenTelemetry's httpx instrumentation.

Span names and recorded URLs use the SCIM client's redacted path (``/Users/{id}``,
``/Users?filter=<redacted>…``): a filter carries the userName and ids may equal it, so the real URL is never recorded.
"""

from __future__ import annotations

import httpx
from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport

from okta_bridge.http import pooled_transport

__all__ = ["traced_client"]


async def _name_span(span, request) -> None:
    redacted = (request.extensions or {}).get("redacted_path", "/")
    if span is None or not span.is_recording():
        return
    url = request.url
    path = url.path.decode() if isinstance(url.path, bytes) else str(url.path)
    first = "/" + redacted.strip("/").split("/")[0].split("?")[0]
    base = path[: path.rfind(first)] if first in path else ""
    safe = f"{url.scheme}://{url.host}:{url.port}{base}{redacted}"
    span.update_name(f"SCIM {request.method.decode() if isinstance(request.method, bytes) else request.method} {redacted.split('?')[0]}")
    for attribute in ("url.full", "http.url"):
        span.set_attribute(attribute, safe)
    span.set_attribute("url.template", redacted)


def traced_client(max_connections: int = 32) -> httpx.AsyncClient:
    """``max_connections``: the replica's in-flight limit (:mod:`okta_bridge.http`)."""
    transport = AsyncOpenTelemetryTransport(pooled_transport(max_connections), request_hook=_name_span)
    return httpx.AsyncClient(transport=transport)
