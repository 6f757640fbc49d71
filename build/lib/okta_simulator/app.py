"""Composition root: build the FastAPI app around one Simulator."""
from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from . import gateway
from .admin import build_admin_router
from .api import build_router
from .oauth import build_oauth_router
from .oidc_pages import build_oidc_router
from .oidc_token import exchange
from .sim import Clock, Settings, Simulator


def create_app(settings: Settings | None = None, clock: Clock = time.time) -> FastAPI:
    sim = Simulator(settings or Settings(), clock)
    app = FastAPI(title="Okta Management API simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sim = sim
    gateway.install(app, sim)
    app.include_router(build_router(sim))
    app.include_router(build_admin_router(sim))
    app.include_router(build_oauth_router(sim.oauth, lambda form, auth: exchange(sim.oidc, form, auth)))
    app.include_router(build_oidc_router(sim.oidc))

    @app.exception_handler(ValueError)
    async def bad_value(_request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    return app
