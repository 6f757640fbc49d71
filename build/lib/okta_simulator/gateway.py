"""What every `/api/v1` request passes first: the URL length limit (`Settings.max_url_bytes`: 414 before anything
is counted; `/_admin` has no limit), SSWS or OAuth 2.0 auth and scopes (:mod:`okta_simulator.oauth`), injected
faults, rate limits, and the headers Okta sends (`X-Rate-Limit-*` on every answer, `Date` from the simulator's
clock). A fault with an `edit` is handed to the endpoint in `request.state.fault`."""
from __future__ import annotations

import asyncio
from email.utils import formatdate

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .errors import OktaError, error_response, invalid, invalid_token, rate_limited, server_error, uri_too_long
from .plans import bucket_for
from .sim import Simulator


def _token_id(sim: Simulator, request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return sim.token_id(value.strip()) if scheme == "SSWS" else None


def url_bytes(request: Request) -> int:
    """The request target as sent: path (still percent-encoded), `?` and query string."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    return len(raw_path.split(b"?")[0]) + (len(query) + 1 if query else 0)


def _editable(request: Request) -> bool:
    return request.method == "GET" and request.url.path.rstrip("/") == "/api/v1/users"


def install(app: FastAPI, sim: Simulator) -> None:
    @app.exception_handler(OktaError)
    async def okta_error(_request: Request, exc: OktaError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:])
        return error_response(invalid(f"{where}: {first.get('msg', 'invalid')}"))

    @app.middleware("http")
    async def okta_gateway(request: Request, call_next):
        now = sim.now()
        date = {"Date": formatdate(now, usegmt=True)}
        if not request.url.path.startswith("/api/"):
            response = await call_next(request)
            response.headers.update(date)
            return response
        size = url_bytes(request)
        if size > sim.settings.max_url_bytes:
            return error_response(uri_too_long(size, sim.settings.max_url_bytes), headers=date)
        token_id = _token_id(sim, request)
        if token_id is None:  # an OAuth 2.0 access token: the app's client id stands for the token from here on
            token_id, denied = sim.oauth.authenticate(request)
            if denied is not None:
                denied.headers.update(date)
                return denied
        if token_id is None:
            return error_response(invalid_token(), headers=date)
        bucket = bucket_for(request.method, request.url.path)
        decision = sim.limiter.check(bucket, token_id, now)
        headers = {**date, "X-Rate-Limit-Limit": str(decision.limit),
                   "X-Rate-Limit-Remaining": str(decision.remaining), "X-Rate-Limit-Reset": str(decision.reset)}
        fault = sim.faults.take(bucket, request.url.path, answered=decision.allowed, editable=_editable(request))
        if fault is not None and fault.status is not None:
            sim.faults.used += 1
            await asyncio.sleep(fault.delay_s)
            if fault.reset_s is not None:  # a 429 that resets soon (the concurrency limit's), not at the minute
                headers.update({"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(now + fault.reset_s) + 1)})
            return error_response(rate_limited() if fault.status == 429 else server_error(fault.status),
                                  headers=headers)
        if not decision.allowed:
            return error_response(rate_limited(), headers=headers)
        request.state.token_id = token_id
        request.state.fault = fault  # an `edit` is applied by the endpoint (users_api)
        response = await call_next(request)  # the answer is computed now ...
        if fault is not None:
            sim.faults.used += 1
            await asyncio.sleep(fault.delay_s)  # ... and arrives late: a slow network or a slow Okta
        response.headers.update(headers)
        return response
