"""``bridgectl drift`` and ``bridgectl delete-group``: operator commands that reach the SCIM targets.

``delete-group``: delete the target group that an Okta group was pushed to ("unlink and delete in target app").
Unpushing never deletes; this is the explicit, audited operator action. It is planned like any group change (the
dispatcher applies it under the group's lease) and waits for the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from bridgectl.common import CONNECTORS, JSON, OPERATOR, bad_input, emit, load, operator_name, progress, resolve_app
from okta_bridge.contracts import AuditStep
from okta_bridge.settings import BridgeSettings
from scim_dispatcher.adapters.scim_client import ScimClient
from scim_dispatcher.adapters.scim_errors import ScimError
from scim_dispatcher.adapters.traced_http import app_clients

if TYPE_CHECKING:
    from scim_dispatcher.drift import Drift

GROUP_PLAN_ENDS = (AuditStep.APPLIED, AuditStep.SKIPPED, AuditStep.DEAD_LETTERED)  # a group plan's outcomes


@dataclass(frozen=True)
class CommandOutcome:
    """How a command ended: its exit code and what to tell the operator."""

    code: int
    message: str


@dataclass(frozen=True)
class DriftRow:
    """One app's drift check and what was done about it."""

    result: Drift
    action: str


@contextlib.asynccontextmanager
async def _clients(apps):
    """Per app, a client with its ``tls`` settings (as the dispatcher has); a CA or certificate file that cannot be
    loaded ends the command with the app's name."""
    try:
        http = app_clients(apps, 8)
    except ValueError as exc:
        bad_input(str(exc))
    try:
        yield http
    finally:
        for client in set(http.values()):
            await client.aclose()


def delete_group(app: str = typer.Option(..., help="the app's name or Okta app id"),
                 group: str = typer.Option(..., help="the Okta group id (00g…) whose target group is deleted"),
                 yes: bool = typer.Option(False, "--yes", help="confirm: the target group is deleted"),
                 operator: str = OPERATOR,
                 wait_s: float = typer.Option(60.0, help="how long to wait for the outcome (0: do not wait)"),
                 connectors_file: str = CONNECTORS, json_: bool = JSON) -> None:
    """Delete the target group of a group that is no longer pushed (audited); exit 1 unless it was applied."""
    from okta_bridge.contracts import is_okta_id

    if not is_okta_id(group):
        bad_input("--group: not an Okta group id (20 letters and digits, 00g…)")
    connectors = load(connectors_file)
    connector = resolve_app(connectors, app)
    if not yes:
        bad_input("refusing without --yes: this deletes the group in the target app")
    outcome = asyncio.run(_delete_group(connectors, connector, group, operator_name(operator), wait_s))
    emit(json_, {"app": connector.name, "group": group, "ok": outcome.code == 0, "outcome": outcome.message},
         lambda: typer.echo(outcome.message, err=outcome.code != 0))
    raise typer.Exit(outcome.code)


async def _operator_bus(base: BridgeSettings, org: str):
    """The operator commands publish as the services do: confirmed, and audited as ``operator-cli``."""
    from okta_bridge.audit import AuditPublisher
    from okta_bridge.bus import Publisher
    from okta_bridge.runtime import make_broker

    broker = make_broker(base.rabbitmq_url.get_secret_value(), 1)
    publisher = Publisher(await broker.connect())
    await publisher.start()
    return broker, publisher, AuditPublisher(publisher, "operator-cli", org)


async def _delete_group(connectors, app, group_id: str, operator: str, wait_s: float) -> CommandOutcome:
    from okta_bridge.contracts import GroupAction, GroupPlanned, Reason
    from okta_bridge.mongo import connect
    from okta_bridge.runtime import PlanPublisher, prepare_topology
    from okta_bridge.settings import OktaSettings
    from okta_bridge.stores.audit import AuditStore
    from okta_bridge.stores.groups import GroupState
    from okta_bridge.stores.partitions import MongoPartitions, PartitionCountChanged

    base, org = BridgeSettings(), OktaSettings().org_url
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    broker, publisher, audit = await _operator_bus(base, org)
    try:
        state = GroupState(db, org)
        if await state.is_pushed(app.okta_app_id, group_id) or group_id in app.push_groups:
            return CommandOutcome(2, f"group {group_id} is still pushed to {app.name}: take it out of push_groups "
                                     "first")
        try:  # routed by this file's count: refused when the pool's recorded count is another (two writers)
            await MongoPartitions(db, org).claim_count(app.pool, connectors.partitions(app.pool))
        except PartitionCountChanged as exc:
            return CommandOutcome(2, str(exc))
        version = await state.next_group_version(app.okta_app_id, group_id)
        cause = f"operator:delete-group by {operator}"
        # declared, or checked only with BROKER_DECLARE=false (an operator user has no configure right)
        await prepare_topology(broker, await broker.connect(), pools={app.pool: connectors.partitions(app.pool)})
        await audit.record(AuditStep.PLANNED, reason=Reason.OPERATOR, app_id=app.okta_app_id, okta_group_id=group_id,
                           plan_version=version, event_type=cause,
                           detail=f"delete of the target group requested by {operator}")
        plan = GroupPlanned(org=org, app_id=app.okta_app_id, okta_group_id=group_id, version=version,
                            action=GroupAction.DELETE, cause=cause)
        await PlanPublisher(publisher, connectors).publish(plan, app.pool)
        if wait_s <= 0:
            return CommandOutcome(0, f"delete planned (v{version}); follow it with GET /audit?group={group_id}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            done = await AuditStore(db).outcome_of_group_plan(group_id, version, "scim-dispatcher",
                                                              list(GROUP_PLAN_ENDS))
            if done:
                return CommandOutcome(0 if done["step"] == AuditStep.APPLIED.value else 1,
                                      f"{done['step']}: {done.get('detail')}")
            await asyncio.sleep(0.5)
        return CommandOutcome(1, f"delete planned (v{version}) but no outcome within {wait_s:.0f}s; is a dispatcher "
                                 "running?")
    finally:
        await broker.stop()
        await client.close()


def drift(app: str = typer.Option(None, help="one app (name or Okta app id); default: every app"),
          repair: bool = typer.Option(False, "--repair", help="ask for a full sync of each app with drift"),
          interval: float = typer.Option(0, help="run again every this many seconds (0: once)"),
          operator: str = OPERATOR, connectors_file: str = CONNECTORS, json_: bool = JSON) -> None:
    """Compare Okta's assignments, the target's accounts and the bridge's links; exit 1 when they drift.
    A dry run unless --repair."""
    connectors = load(connectors_file, secrets=True)
    chosen = [resolve_app(connectors, app)] if app else connectors.apps
    while True:
        results = asyncio.run(_drift(chosen, repair, operator_name(operator), not json_))
        if json_:
            emit(True, [{"app": row.result.app, "assigned": row.result.assigned, "accounts": row.result.accounts,
                         "counts": row.result.counts(), "found": row.result.found, "action": row.action}
                        for row in results], lambda: None)
            if interval <= 0:
                drifted = any(_drifted(row) for row in results)
                raise typer.Exit(1 if drifted else 0)
            time.sleep(interval)
            continue
        table = Table("app", "assigned", "accounts", "missing", "should be inactive", "unlinked", "broken link",
                      "duplicate", "unknown", "adoption held", "action")
        for row in results:
            result, c = row.result, row.result.counts()
            table.add_row(result.app, str(result.assigned), str(result.accounts), str(c["missing"]),
                          str(c["should_be_inactive"]), str(c["unlinked"]), str(c["broken_link"]), str(c["duplicate"]),
                          str(c["unknown"]), str(c["adoption_held"]),
                          row.action)
        Console(width=200).print(table)
        for row in results:
            for kind, ids in row.result.found.items():
                if ids:
                    typer.echo(f"{row.result.app} {kind}: {', '.join(ids[:10])}{' …' if len(ids) > 10 else ''}")
        if interval <= 0:
            drifted = any(_drifted(row) for row in results)
            raise typer.Exit(1 if drifted else 0)
        time.sleep(interval)


def _drifted(row: DriftRow) -> bool:
    return bool(row.result.repairable or row.result.found["duplicate"] or row.result.found["adoption_held"])


async def _drift(apps, repair: bool, operator: str, bars: bool = False) -> list[DriftRow]:
    from okta_bridge.contracts import AppSyncRequested, Reason, SyncReason
    from okta_bridge.mongo import connect
    from okta_bridge.stores.links import MongoLinks
    from bridgectl.bus import okta_client
    from okta_bridge.settings import OktaSettings
    from okta_bridge.runtime import prepare_topology
    from okta_bridge.topology import EVENTS_EXCHANGE, SYNC_ROUTING_KEY
    from scim_dispatcher.drift import check_app

    base, okta_cfg = BridgeSettings(), OktaSettings()
    org = okta_cfg.org_url
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    reading = contextlib.AsyncExitStack()  # the Okta client, inside the org-wide budget while the check runs
    broker = None
    results: list[DriftRow] = []
    try:
        okta = await reading.enter_async_context(okta_client(settings=okta_cfg))
        broker, publisher, audit = await _operator_bus(base, org)
        await prepare_topology(broker, await broker.connect(), translator=True)
        async with _clients(apps) as http:
            for app in progress(apps, "checking drift", bars):
                scim = ScimClient(http[app.okta_app_id], app.base_url, app.version, headers=app.auth_headers(),
                                  timeout_s=app.timeout_s, unique_field=app.unique_user_field,
                                  content_type=app.content_type, max_response_bytes=app.max_response_bytes)
                links = await MongoLinks(db, org).targets_of_app(app.okta_app_id)
                try:
                    result = await check_app(app, okta, scim, links)
                except ScimError as exc:
                    typer.echo(f"{app.name}: {exc.message}", err=True)
                    continue
                action = "none"
                summary = ", ".join(f"{n} {k}" for k, n in result.counts().items() if n)
                if result.repairable and repair:
                    import uuid

                    await publisher.publish(AppSyncRequested(org=org, app_id=app.okta_app_id,
                                                             reason=SyncReason.OPERATOR, sync_id=uuid.uuid4().hex),
                                            exchange=EVENTS_EXCHANGE.name, routing_key=SYNC_ROUTING_KEY)
                    action = "full sync requested"
                elif result.repairable:
                    action = "dry run (--repair to fix)"
                if result.found["duplicate"]:  # a full sync cannot choose between two accounts of one user
                    action = f"{action}; duplicates need a person" if action != "none" else "duplicates need a person"
                if result.found["adoption_held"]:  # an account that is someone else's: never adopted by a sync
                    action = (f"{action}; held adoptions need a person" if action != "none"
                              else "held adoptions need a person")
                await audit.record(AuditStep.PLANNED if action == "full sync requested" else AuditStep.SKIPPED,
                                   reason=Reason.OPERATOR, app_id=app.okta_app_id, event_type="operator:drift",
                                   detail=f"drift check by {operator}: {summary or 'no drift'}; {action}")
                results.append(DriftRow(result, action))
    finally:
        if broker is not None:
            await broker.stop()
        await reading.aclose()
        await client.close()
    return results

