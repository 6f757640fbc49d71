"""queue-poller composition root: settings -> adapters -> Poller; the only module that sees broker and adapters."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import datetime, timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from okta_bridge.audit import BrokerAudit
from okta_bridge.connectors import load_connectors
from okta_bridge.logs import register_secret, setup_logging, register_settings_secrets
from okta_bridge.mongo import claim_org, connect, ensure_indexes
from okta_bridge.okta_client import OktaClient
from okta_bridge.runtime import make_broker
from okta_bridge.settings import BridgeSettings, OktaSettings
from okta_bridge.telemetry import setup_tracing, shutdown_tracing
from okta_bridge.topology import declare_translator
from queue_poller.adapters.mongo_state import MongoPollerState
from queue_poller.adapters.okta_log import OktaLogSource
from queue_poller.adapters.outbox import BrokerOutbox
from queue_poller.handlers import Poller, PollerConfig

log = logging.getLogger("queue_poller")


class PollerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POLLER_", extra="ignore")

    page_limit: int = Field(default=1000, ge=1, le=1000)
    idle_interval_s: float = 5.0
    min_interval_s: float = 0.5
    start_from: datetime | None = Field(default=None, description="first start: read the log from here (default now)")
    max_cursor_age_s: float = Field(default=7 * 86400, description="older last poll = expired cursor: full sync")


async def main() -> None:
    setup_logging("queue-poller")
    setup_tracing("queue-poller")
    base, okta, cfg = BridgeSettings(), OktaSettings(), PollerSettings()
    register_secret(okta.api_token.get_secret_value())
    register_settings_secrets(base.rabbitmq_url.get_secret_value(), base.mongodb_url.get_secret_value())
    connectors = load_connectors(base.connectors_file)
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    await claim_org(db, okta.org_url)
    await ensure_indexes(db)
    broker = make_broker(base.rabbitmq_url.get_secret_value(), base.prefetch)
    await broker.start()
    await declare_translator(broker)
    okta_client = OktaClient(okta.org_url, okta.api_token.get_secret_value(), timeout_s=okta.request_timeout_s)
    poller = Poller(
        PollerConfig(org=okta.org_url, app_ids=tuple(connectors.by_app_id()), own_token_id=okta.api_token_id,
                     start_from=cfg.start_from, max_cursor_age=timedelta(seconds=cfg.max_cursor_age_s),
                     page_limit=cfg.page_limit, idle_interval_s=cfg.idle_interval_s, min_interval_s=cfg.min_interval_s,
                     group_names=frozenset(n for a in connectors.apps for n in a.pushed_group_names)),
        OktaLogSource(okta_client, cfg.page_limit), MongoPollerState(db, okta.org_url),
        BrokerOutbox(broker, BrokerAudit(broker, "queue-poller", okta.org_url), okta.org_url),
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await poller.start()
    log.info("polling %s for %d app(s)", okta.org_url, len(connectors.apps))
    try:
        await poller.run(stop)
    finally:
        await broker.stop()
        await okta_client.aclose()
        await client.close()
        shutdown_tracing()


if __name__ == "__main__":
    asyncio.run(main())
