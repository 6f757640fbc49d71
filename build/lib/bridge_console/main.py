"""console composition root: the pages on ``CONSOLE_PORT`` (uvicorn), health and metrics on ``METRICS_PORT``."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from bridge_console.app import Actions, create_app
from bridge_console.auth import Oidc, RateLimit, Sessions
from bridge_console.data import Reader
from bridge_console.settings import ConsoleSettings
from okta_bridge.apiauth import ApiAuthSettings
from okta_bridge.connectors import load_connectors
from okta_bridge.health import Readiness, mongo_check, serve_health
from okta_bridge.http import ssl_context, TlsSettings
from okta_bridge.logs import mask_handlers, register_settings_secrets, setup_logging
from okta_bridge.redact import register_secret
from okta_bridge.mongo import connect
from okta_bridge.settings import BridgeSettings, OktaSettings
from okta_bridge.telemetry import setup_tracing, shutdown_tracing

log = logging.getLogger("console")


def build() -> tuple[FastAPI, ConsoleSettings]:
    setup_logging("console")
    setup_tracing("console")
    base, okta, cfg, auth = BridgeSettings(), OktaSettings(), ConsoleSettings(), ApiAuthSettings()
    tokens = auth.parsed_tokens()
    register_settings_secrets(base.rabbitmq_url.get_secret_value(), base.mongodb_url.get_secret_value())
    if cfg.oidc_client_secret.get_secret_value():
        register_secret(cfg.oidc_client_secret.get_secret_value())
    connectors = load_connectors(base.connectors_file, secrets=True)  # a preview reads the target
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    sessions = Sessions(db, cfg.session_ttl_s)
    reader = Reader(db, okta.org_url, connectors)
    http = httpx.AsyncClient(timeout=15, verify=ssl_context(TlsSettings(
        trust=okta.tls_trust, ca_file=okta.tls_ca_file), "OKTA_TLS"))
    oidc = None
    if cfg.oidc_client_id:
        oidc = Oidc(cfg.oidc_issuer or okta.org_url.rstrip("/"), cfg.oidc_client_id,
                    cfg.oidc_client_secret.get_secret_value(), f"{cfg.public_url}/oidc/callback",
                    cfg.oidc_groups_claim, http, cfg.oidc_scopes)
    elif not len(tokens):
        log.warning("neither CONSOLE_OIDC_CLIENT_ID nor API_TOKENS: nobody can sign in")
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        mask_handlers()
        health = await serve_health(base.metrics_port, readiness)
        await sessions.ensure_indexes()
        readiness.add("mongodb", mongo_check(client))
        readiness.started = True
        log.info("console on %s (%d app(s)); sign-in: %s", cfg.public_url, len(connectors.apps),
                 ", ".join(([f"Okta ({oidc.issuer})"] if oidc else []) + (["tokens"] if len(tokens) else []))
                 or "none")
        yield
        readiness.started = False
        await http.aclose()
        await client.close()
        if health is not None:
            await health.stop()
        shutdown_tracing()

    app = create_app(cfg, tokens, auth.hosts(), sessions, reader,
                     Actions(reader, base.rabbitmq_url.get_secret_value()),
                     RateLimit(db, cfg.actions_per_minute), oidc, lifespan=lifespan)
    return app, cfg


def main() -> None:
    app, cfg = build()
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning",
                                           proxy_headers=False))
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
