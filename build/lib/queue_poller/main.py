"""queue-poller composition root: settings -> adapters -> Poller; the only module that sees broker and adapters."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import signal
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from okta_bridge.audit import AuditPublisher
from okta_bridge.bus import Publisher
from okta_bridge.connectors import load_connectors
from okta_bridge.health import Readiness, broker_check, mongo_check, serve_health
from okta_bridge.metrics import POLLER
from okta_bridge.observe import record_budget, source_name
from okta_bridge.stores.observed import MongoObserved
from okta_bridge.logs import register_secret, setup_logging, register_settings_secrets
from okta_bridge.mongo import connect, key
from okta_bridge.stores.meta import claim_org
from okta_bridge.okta_auth import okta_client_from_settings, scopes_for
from okta_bridge.permits import okta_budget
from okta_bridge.runtime import make_broker, prepare_topology
from okta_bridge.settings import BridgeSettings, OktaSettings
from okta_bridge.stores.leases import Leases
from okta_bridge.telemetry import setup_tracing, shutdown_tracing
from okta_bridge.stores.assignments import MongoAssignments
from okta_bridge.stores.cursor import MongoPollerState
from okta_bridge.stores.permits import MongoPermits
from queue_poller.adapters.okta_log import OktaLogSource
from queue_poller.adapters.outbox import BrokerOutbox
from queue_poller.handlers import Poller, PollerConfig
from queue_poller.ports import LeadershipLost

log = logging.getLogger("queue_poller")


class PollerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POLLER_", extra="ignore")

    page_limit: int = Field(default=1000, ge=1, le=1000)
    idle_interval_s: float = 5.0
    min_interval_s: float = 0.5
    start_from: datetime | None = Field(default=None, description="first start: read the log from here (default now)")
    max_cursor_age_s: float = Field(default=7 * 86400, description="older last poll = expired cursor: full sync")
    lease_ttl_s: float = Field(default=10.0, ge=2.0, description="a dead leader's lease frees after this; renewed "
                                                                 "every third of it")

    @field_validator("start_from")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        """``2026-01-01T10:00:00+02:00`` is 08:00 UTC; a time without an offset is taken as UTC."""
        if value is None:
            return None
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


async def main() -> None:
    setup_logging("queue-poller")
    setup_tracing("queue-poller")
    base, okta, cfg = BridgeSettings(), OktaSettings(), PollerSettings()
    register_secret(okta.api_token.get_secret_value())
    register_settings_secrets(base.rabbitmq_url.get_secret_value(), base.mongodb_url.get_secret_value())
    connectors = load_connectors(base.connectors_file, secrets=False)  # never writes to a target
    readiness = Readiness()
    POLLER.export()
    health = await serve_health(base.metrics_port, readiness)
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    await claim_org(db, okta.org_url)
    broker = make_broker(base.rabbitmq_url.get_secret_value(), base.prefetch)
    connection = await broker.connect()
    await prepare_topology(broker, connection, translator=True)
    publisher = Publisher(connection)
    await publisher.start()
    budget = okta_budget(MongoPermits(db, okta.org_url), f"queue-poller@{socket.gethostname()}:{os.getpid()}",
                         okta.max_concurrent_requests, okta.request_timeout_s)
    budget_stop = asyncio.Event()
    budget_task = asyncio.get_running_loop().create_task(budget.run(budget_stop))
    okta_client = okta_client_from_settings(okta, scopes_for("poller"), gate=lambda: budget.slot("requests"))
    own_token_id, own_client_id = okta_client.auth.own_ids()
    observe_task = asyncio.get_running_loop().create_task(record_budget(
        MongoObserved(db, okta.org_url), source_name("queue-poller"), okta_client.budget, budget_stop))
    store = MongoPollerState(db, okta.org_url)
    await store.ensure_indexes()
    await MongoAssignments(db, okta.org_url).ensure_indexes()
    poller = Poller(
        PollerConfig(org=okta.org_url, app_ids=tuple(connectors.by_app_id()), own_token_id=own_token_id,
                     own_client_id=own_client_id,
                     start_from=cfg.start_from, max_cursor_age=timedelta(seconds=cfg.max_cursor_age_s),
                     page_limit=cfg.page_limit, idle_interval_s=cfg.idle_interval_s, min_interval_s=cfg.min_interval_s,
                     group_names=frozenset(n for a in connectors.apps for n in a.pushed_group_names)),
        OktaLogSource(okta_client, cfg.page_limit), store,
        BrokerOutbox(publisher, AuditPublisher(publisher, "queue-poller", okta.org_url), okta.org_url),
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    leases, lease_key = Leases.poller(db, cfg.lease_ttl_s), key("poller", okta.org_url)
    readiness.add("rabbitmq", broker_check(connection))
    readiness.add("mongodb", mongo_check(client))
    readiness.add("role", lambda: (True, "leading" if POLLER.leading else "standing by"))
    readiness.started = True
    try:
        await lead_when_elected(poller, store, leases, lease_key, stop, cfg.lease_ttl_s,
                                f"polling {okta.org_url} for {len(connectors.apps)} app(s)")
    finally:
        with suppress(Exception):
            await leases.release(lease_key)
        readiness.started = False
        budget_stop.set()
        await budget_task
        await observe_task
        if health is not None:
            await health.stop()
        await broker.stop()
        await okta_client.aclose()
        await client.close()
        shutdown_tracing()


async def lead_when_elected(poller: Poller, store: MongoPollerState, leases: Leases, lease_key: str,
                            stop: asyncio.Event, ttl_s: float, what: str) -> None:
    """Several replicas may run; the one holding the lease polls, the others stand by and take over within
    ``ttl_s`` of its death. The lease's fencing token goes with every cursor write, so a leader that lost its lease
    (paused, partitioned) cannot move the cursor any more."""
    standby_logged = False
    while not stop.is_set():
        try:
            token = await leases.try_acquire(lease_key)
        except Exception as exc:  # noqa: BLE001 - database unreachable: keep trying
            log.warning("poller lease: %s: %s", type(exc).__name__, exc)
            token = None
        if token is None:
            if not standby_logged:
                log.info("another poller holds the lease: standing by")
                standby_logged = True
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            continue
        standby_logged = False
        POLLER.leading = True
        store.fence = token
        halt = asyncio.Event()
        renewer = asyncio.create_task(_renew(leases, lease_key, ttl_s, halt, stop))
        try:
            await poller.start()
            log.info("%s (lease token %d)", what, token)
            await poller.run(halt)
        except LeadershipLost as exc:
            log.warning("lost the poller lease (%s): standing by", exc)
            await leases.release(lease_key)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ttl_s)
        finally:
            POLLER.leading = False
            halt.set()
            renewer.cancel()
            with suppress(asyncio.CancelledError):
                await renewer


async def _renew(leases: Leases, lease_key: str, ttl_s: float, halt: asyncio.Event, stop: asyncio.Event) -> None:
    while not halt.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ttl_s / 3)
        if stop.is_set():
            halt.set()
            return
        try:
            renewed = await leases.try_acquire(lease_key)
        except Exception as exc:  # noqa: BLE001 - keep polling; the fence stops us if someone else took over
            log.warning("poller lease renewal failed: %s", exc)
            continue
        if renewed is None:
            log.warning("the poller lease was taken by another replica: standing by")
            halt.set()


if __name__ == "__main__":
    asyncio.run(main())
