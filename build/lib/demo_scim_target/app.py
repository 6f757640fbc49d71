"""Application factory and the ASGI middleware that routes tenants, counts requests in flight, adds the
configured latency, logs requests and injects faults."""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from .common import ScimError, TargetConfig, TargetState, content_type, dialect_of, error_body, error_response
from .requestlog import MAX_TEXT, decode_body
from .store import StoreError
from .tenants import SCOPE_KEY as TENANT_KEY
from .tenants import split_tenant

UNLOGGED_PREFIXES = ("/_admin", "/health")


class TargetMiddleware:
    """For every SCIM request (not /_admin, not /health): finds its tenant, counts it in flight until its
    answer is sent, reads the whole request, logs it, waits the configured latency, applies a fault rule
    if one matches."""

    def __init__(self, app, state: TargetState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(UNLOGGED_PREFIXES):
            return await self.app(scope, receive, send)
        tenant, prefix = split_tenant(scope["path"])
        scope = {**scope, TENANT_KEY: tenant}
        if prefix:
            scope["root_path"] = scope.get("root_path", "") + prefix
        self.state.inflight.enter(tenant)
        try:
            await self._serve(scope, receive, send, tenant)
        finally:
            self.state.inflight.leave(tenant)

    async def _serve(self, scope, receive, send, tenant: str):
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        entry = self.state.log.start(scope["method"], scope["path"],
                                     scope.get("query_string", b"").decode("latin-1"), headers, body, tenant)
        started = time.monotonic()
        rule = self.state.faults.take(scope["method"], scope["path"])
        out_chunks: list[bytes] = []

        async def logging_send(message):
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                if rule is not None and rule.status is None and rule.empty_body:
                    message = dict(message)
                    message["headers"] = [(k, v) for k, v in message.get("headers", [])
                                          if k.lower() not in (b"content-length", b"content-type")]
                    message["headers"].append((b"content-length", b"0"))
            elif message["type"] == "http.response.body":
                if rule is not None and rule.status is None and rule.empty_body:
                    if message.get("more_body", False):
                        return
                    message = {"type": "http.response.body", "body": b"", "more_body": False}
                out_chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    entry["response_body"] = decode_body(b"".join(out_chunks)[:MAX_TEXT * 4], redact_it=False)
                    entry["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
            await send(message)

        if self.state.latency_ms:
            await asyncio.sleep(self.state.latency_ms / 1000)
        if rule is not None:
            entry["fault"] = rule.id
            if rule.delay_s:
                await asyncio.sleep(rule.delay_s)
            if rule.status is not None:
                response = self._fault_response(rule, scope["path"])
                return await response(scope, replay, logging_send)
        await self.app(scope, replay, logging_send)

    def _fault_response(self, rule, path: str) -> Response:
        dialect = dialect_of(path)
        media = rule.content_type or content_type(self.state, dialect)
        if rule.empty_body:
            content = b""
        elif rule.body is None:
            content = json.dumps(error_body(dialect, rule.status, f"Injected fault (HTTP {rule.status})"))
        elif isinstance(rule.body, str):
            content = rule.body
        else:
            content = json.dumps(rule.body)
        return Response(content, status_code=rule.status, media_type=media, headers=rule.headers)


def create_app(config: TargetConfig | None = None) -> FastAPI:
    from . import admin, scim11, scim20

    config = config or TargetConfig()
    state = TargetState(config)
    app = FastAPI(title=f"Demo SCIM target ({config.name})", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.target = state

    @app.exception_handler(ScimError)
    async def _scim_error(request: Request, exc: ScimError):
        return error_response(state, dialect_of(request.url.path), exc.status, exc.detail,
                              exc.scim_type, exc.headers)

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError):
        status = exc.status
        if (status == 404 and request.method in ("PUT", "PATCH", "DELETE")
                and "500-instead-of-404" in config.quirks):
            status = 500
        return error_response(state, dialect_of(request.url.path), status, exc.detail, exc.scim_type)

    @app.get("/health")
    async def health():
        return JSONResponse({"status": "ok", "name": config.name, "quirks": sorted(config.quirks)})

    app.include_router(scim20.router)  # the busiest first: routes are tried in order (the prefixes do not overlap)
    app.include_router(scim11.router)
    app.include_router(admin.router)
    app.add_middleware(TargetMiddleware, state=state)
    return app
