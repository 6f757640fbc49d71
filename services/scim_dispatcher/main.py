"""scim-dispatcher composition root: one consumer per served pool; outcomes -> links, audit, retry/hold/DLQ."""

from __future__ import annotations

import asyncio
import logging

from faststream import AckPolicy, FastStream
from faststream.rabbit.annotations import RabbitMessage
from prometheus_client import start_http_server
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from okta_bridge.audit import BrokerAudit
from okta_bridge.connectors import load_connectors
from okta_bridge.contracts import AuditStep, PlanAction, ScimOperationPlanned, TargetValuesObserved
from okta_bridge.group_state import GroupState
from okta_bridge.leases import LeaseBusyError, Leases, ensure_lease_index
from okta_bridge.logs import register_secret, setup_logging, register_settings_secrets
from okta_bridge.mongo import connect
from okta_bridge.runtime import ATTEMPT_HEADER, Republisher, make_broker
from okta_bridge.settings import BridgeSettings, OktaSettings
from okta_bridge.telemetry import setup_tracing, shutdown_tracing
from okta_bridge.topology import (EVENTS_EXCHANGE, WRITEBACK_ROUTING_KEY, declare_dispatcher_pool, declare_translator,
                                  dispatcher_queue)
from scim_dispatcher.adapters.mongo_links import MongoLinks
from scim_dispatcher.adapters.mongo_group_links import MongoGroupLinks
from scim_dispatcher.adapters.scim_groups import ScimGroupClient
from scim_dispatcher.group_main import (PLAN_MESSAGES, handle_group_plan, publish_pending_memberships,
                                        retry_or_dead_letter, scim_fields)
from scim_dispatcher.groups import GroupDispatcher
from scim_dispatcher.adapters.traced_http import traced_client
from scim_dispatcher.adapters.scim_errors import ScimAuthError, ScimError, ScimTransientError
from scim_dispatcher.circuit import Circuits
from scim_dispatcher.handlers import Dispatcher
from scim_dispatcher.observed import observed_changes

log = logging.getLogger("scim_dispatcher")


class DispatcherSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", extra="ignore")

    pools: str = Field(default="default", description="comma-separated pools this dispatcher serves")
    max_attempts: int = Field(default=15, description="transient failures before a plan is dead-lettered")
    probe_interval_s: float = 10.0
    circuit_failures: int = Field(default=5, ge=1, description="transient failures in a row that open the circuit")
    metrics_port: int = Field(default=9108, description="Prometheus metrics (0: off)")
    lease_ttl_s: float = Field(default=60.0, description="a dead holder's (app, user) lease frees after this; "
                                                         "longer than any one plan's SCIM calls")
    group_lease_ttl_s: float = Field(default=120.0, description="a dead holder's group lease frees after this")


def build() -> FastStream:
    setup_logging("scim-dispatcher")
    setup_tracing("scim-dispatcher")
    base, okta, cfg = BridgeSettings(), OktaSettings(), DispatcherSettings()
    connectors = load_connectors(base.connectors_file)
    register_settings_secrets(base.rabbitmq_url.get_secret_value(), base.mongodb_url.get_secret_value())
    pools = [p.strip() for p in cfg.pools.split(",") if p.strip()]
    apps = {a.okta_app_id: a for a in connectors.apps if a.pool in pools}
    for app in apps.values():
        for value in app.auth_headers().values():
            register_secret(value)
            register_secret(value.split(" ", 1)[-1])
    broker = make_broker(base.rabbitmq_url.get_secret_value(), base.prefetch)
    stream = FastStream(broker)
    state: dict = {"circuits": Circuits(cfg.probe_interval_s, cfg.circuit_failures,
                                        {a.okta_app_id: a.name for a in apps.values()}), "broker": broker}

    @stream.on_startup
    async def connect_stores() -> None:
        client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
        http = traced_client()
        clients = {a.okta_app_id: ScimGroupClient(http, a.base_url, a.version, headers=a.auth_headers(),
                                                  timeout_s=a.timeout_s, unique_field=a.unique_user_field,
                                                  deactivate_with=a.deactivate_with, group_update=a.group_update)
                   for a in apps.values()}
        links, group_links, group_state = MongoLinks(db, okta.org_url), MongoGroupLinks(db, okta.org_url), \
            GroupState(db, okta.org_url)
        await group_links.ensure_indexes()
        await group_state.ensure_indexes()
        # a lease outlives the longest apply (lookup, write, read back at the app's timeout) by a margin
        ttl = max([cfg.lease_ttl_s, *(4 * a.timeout_s for a in apps.values())])
        await ensure_lease_index(db.leases)
        state.update(mongo=client, http=http,
                     dispatcher=Dispatcher(apps, clients, links, Leases(db.leases, ttl_s=ttl)),
                     groups=GroupDispatcher(apps, clients, group_state, group_links, links,
                                            Leases(db.leases, ttl_s=max(ttl, cfg.group_lease_ttl_s))),
                     group_state=group_state, audit=BrokerAudit(broker, "scim-dispatcher", okta.org_url))

    @stream.on_startup
    async def metrics() -> None:
        if cfg.metrics_port:
            try:
                start_http_server(cfg.metrics_port)
                log.info("metrics on :%d/metrics", cfg.metrics_port)
            except OSError as exc:  # e.g. a second dispatcher on the same host
                log.warning("metrics port %d not available (%s): metrics off", cfg.metrics_port, exc)

    @stream.on_startup
    async def declare() -> None:
        await broker.connect()
        await declare_translator(broker)  # write-backs go to the translator's queue
        for pool in pools:
            await declare_dispatcher_pool(broker, pool)
        log.info("serving pools %s (%d app(s))", ", ".join(pools), len(apps))

    @stream.after_shutdown  # after the broker drained in-flight messages (graceful_timeout): they still need the database
    async def close() -> None:
        if "http" in state:
            await state["http"].aclose()
            await state["mongo"].close()
        shutdown_tracing()

    for pool in pools:
        subscriber = broker.subscriber(dispatcher_queue(pool), ack_policy=AckPolicy.NACK_ON_ERROR)
        subscriber(_consumer(state, Republisher(broker, dispatcher_queue(pool).name, cfg.max_attempts)))

    return stream


def _consumer(state: dict, republisher: Republisher):
    async def dispatch(msg: RabbitMessage) -> None:
        await handle_plan(state, republisher, msg)

    return dispatch


async def handle_plan(state: dict, republisher: Republisher, msg: RabbitMessage) -> None:
    audit: BrokerAudit = state["audit"]
    attempt = int((msg.headers or {}).get(ATTEMPT_HEADER, 0)) + 1
    try:
        plan = PLAN_MESSAGES.validate_json(msg.body)
    except ValidationError as exc:
        await republisher.dead_letter(msg.body, f"invalid plan: {exc.error_count()} error(s)", attempt, "dispatcher")
        await audit.record(AuditStep.DEAD_LETTERED, detail="dispatcher: invalid plan message")
        await msg.ack()
        return
    if not isinstance(plan, ScimOperationPlanned):
        await handle_group_plan(state, republisher, plan, attempt)
        await msg.ack()
        return
    fields = dict(event_uuid=plan.event_uuid, event_type=plan.cause, app_id=plan.app_id,
                  okta_user_id=plan.okta_user_id, plan_version=plan.version)
    dispatcher: Dispatcher = state["dispatcher"]
    circuits: Circuits = state["circuits"]
    if plan.app_id not in dispatcher.apps:
        await republisher.dead_letter(plan, "app not served by this pool's configuration", attempt, "dispatcher")
        await audit.record(AuditStep.DEAD_LETTERED, detail="app is not in the connectors file", **fields)
    elif not circuits.allow(plan.app_id):
        reason = circuits.reason(plan.app_id)  # read now: a probe may close the circuit while we publish
        await republisher.hold(plan, attempt - 1)
        await audit.record(AuditStep.HELD, detail=f"app circuit open, held: {reason}", **fields)
    else:
        await _apply(state, republisher, plan, attempt, fields)
    await msg.ack()


async def _apply(state: dict, republisher: Republisher, plan: ScimOperationPlanned, attempt: int, fields: dict) -> None:
    audit: BrokerAudit = state["audit"]
    circuits: Circuits = state["circuits"]
    try:
        outcome = await state["dispatcher"].apply(plan)
    except ScimAuthError as exc:
        circuits.open(plan.app_id, exc.message)
        log.warning("app %s: credentials rejected (%s); circuit open, backlog held", plan.app_id, exc.message)
        await republisher.hold(plan, attempt - 1)
        await audit.record(AuditStep.HELD, detail=exc.message, **scim_fields(exc), **fields)
        return
    except ScimTransientError as exc:
        await audit.record(AuditStep.FAILED, detail=exc.message, **scim_fields(exc), **fields)
        if circuits.failure(plan.app_id, exc.message):  # the target is down: stop calling it, park the backlog
            await republisher.hold(plan, attempt - 1)
            await audit.record(AuditStep.HELD, detail=f"app circuit open, held: {circuits.reason(plan.app_id)}",
                               **scim_fields(exc), **fields)
            return
        await retry_or_dead_letter(republisher, audit, plan, attempt, exc.message, exc.retry_after_s,
                                   scim_fields(exc), fields)
        return
    except LeaseBusyError as exc:  # another dispatcher is applying this key: later, through the retry tiers
        await retry_or_dead_letter(republisher, audit, plan, attempt, str(exc), None, {}, fields)
        return
    except ScimError as exc:
        log.warning("plan v%s for %s dead-lettered: %s", plan.version, plan.app_id, exc.message)
        await audit.record(AuditStep.FAILED, detail=exc.message, **scim_fields(exc), **fields)
        await republisher.dead_letter(plan, exc.message, attempt, "dispatcher")
        await audit.record(AuditStep.DEAD_LETTERED, detail=exc.message, **scim_fields(exc), **fields)
        return
    except Exception as exc:  # noqa: BLE001 - database trouble and the like: transient
        log.exception("applying plan failed")
        await retry_or_dead_letter(republisher, audit, plan, attempt, f"{type(exc).__name__}: {exc}", None, {}, fields)
        return
    if outcome.status == "applied":  # the target answered (a stale skip never called it)
        circuits.close(plan.app_id)
    step = {"applied": AuditStep.APPLIED, "skipped": AuditStep.SKIPPED}.get(outcome.status, AuditStep.SKIPPED_STALE)
    await audit.record(step, target_id=outcome.target_id, scim_method=outcome.method, scim_path=outcome.path,
                       scim_status=outcome.http_status, duration_ms=outcome.duration_ms, detail=outcome.detail,
                       **fields)
    app = state["dispatcher"].apps[plan.app_id]
    if app.push_groups and outcome.status in ("applied", "skipped_stale") and outcome.target_id \
            and plan.action is PlanAction.UPSERT:
        await publish_pending_memberships(state, plan)
    if app.accept_user_updates and outcome.returned:
        values = observed_changes(app, plan, outcome.returned)
        if values:
            await state["broker"].publish(
                TargetValuesObserved(org=plan.org, app_id=plan.app_id, okta_user_id=plan.okta_user_id,
                                     values=values, event_uuid=plan.event_uuid),
                exchange=EVENTS_EXCHANGE, routing_key=WRITEBACK_ROUTING_KEY, persist=True)


if __name__ == "__main__":
    asyncio.run(build().run())
