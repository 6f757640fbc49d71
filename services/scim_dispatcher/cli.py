"""Operator commands for SCIM targets (typer): ``python -m scim_dispatcher.cli COMMAND``.

``test-connectors``: like Okta's "Test Connector Configuration" button: for every app in the connectors file, GET
the service provider configuration (``/ServiceProviderConfigs`` for 1.1, ``/ServiceProviderConfig`` for 2.0) and
``/Users?count=2``.

``delete-group``: delete the target group that an Okta group was pushed to ("unlink and delete in target app").
Unpushing never deletes; this is the explicit, audited operator action. It is planned like any group change (the
dispatcher applies it under the group's lease) and waits for the outcome.
"""

from __future__ import annotations

import asyncio

import httpx
import typer
from rich.console import Console
from rich.table import Table

from okta_bridge.connectors import ConnectorsFileError, load_connectors
from okta_bridge.settings import BridgeSettings
from scim_dispatcher.adapters.scim_client import ScimClient
from scim_dispatcher.adapters.scim_errors import ScimError

cli = typer.Typer(add_completion=False, help=__doc__)


@cli.callback()
def _root() -> None:
    """SCIM target operations."""


@cli.command("test-connectors")
def test_connectors(connectors_file: str = typer.Option(None, help="default: CONNECTORS_FILE")) -> None:
    """Test the connection to every app of the connectors file; exit 1 if any fails."""
    try:
        apps = load_connectors(connectors_file or BridgeSettings().connectors_file).apps
    except ConnectorsFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    results = asyncio.run(_test_all(apps))
    table = Table("app", "SCIM", "base URL", "result")
    for app, error in results:
        table.add_row(app.name, app.version, app.base_url, "[green]ok[/]" if error is None else f"[red]{error}[/]")
    Console().print(table)
    raise typer.Exit(1 if any(error for _, error in results) else 0)


async def _test_all(apps):
    async with httpx.AsyncClient() as http:
        async def one(app):
            client = ScimClient(http, app.base_url, app.version, headers=app.auth_headers(), timeout_s=app.timeout_s)
            try:
                await client.test_connection()
                return app, None
            except ScimError as exc:
                return app, exc.message
        return await asyncio.gather(*(one(a) for a in apps))


@cli.command("delete-group")
def delete_group(app: str = typer.Option(..., help="the app's name or Okta app id"),
                 group: str = typer.Option(..., help="the Okta group id (00g…) whose target group is deleted"),
                 yes: bool = typer.Option(False, "--yes", help="confirm: the target group is deleted"),
                 operator: str = typer.Option(None, envvar="USER", help="who asks (recorded in the audit)"),
                 wait_s: float = typer.Option(60.0, help="how long to wait for the outcome (0: do not wait)"),
                 connectors_file: str = typer.Option(None, help="default: CONNECTORS_FILE")) -> None:
    """Delete the target group of a group that is no longer pushed (audited); exit 1 unless it was applied."""
    try:
        apps = load_connectors(connectors_file or BridgeSettings().connectors_file).apps
    except ConnectorsFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    connector = next((a for a in apps if app in (a.name, a.okta_app_id)), None)
    if connector is None:
        typer.echo(f"no app {app!r} in the connectors file", err=True)
        raise typer.Exit(2)
    if not yes:
        typer.echo("refusing without --yes: this deletes the group in the target app", err=True)
        raise typer.Exit(2)
    code, message = asyncio.run(_delete_group(connector, group, operator or "operator", wait_s))
    typer.echo(message, err=code != 0)
    raise typer.Exit(code)


async def _delete_group(app, group_id: str, operator: str, wait_s: float) -> tuple[int, str]:
    from okta_bridge.audit import BrokerAudit
    from okta_bridge.contracts import AuditStep, GroupAction, GroupPlanned
    from okta_bridge.group_state import GroupState
    from okta_bridge.mongo import connect
    from okta_bridge.runtime import make_broker
    from okta_bridge.settings import OktaSettings
    from okta_bridge.topology import PLANS_EXCHANGE, declare_dispatcher_pool

    base, org = BridgeSettings(), OktaSettings().org_url
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    broker = make_broker(base.rabbitmq_url.get_secret_value(), 1)
    try:
        state = GroupState(db, org)
        if await state.is_pushed(app.okta_app_id, group_id) or group_id in app.push_groups:
            return 2, f"group {group_id} is still pushed to {app.name}: take it out of push_groups first"
        version = await state.next_group_version(app.okta_app_id, group_id)
        cause = f"operator:delete-group by {operator}"
        await broker.connect()
        await declare_dispatcher_pool(broker, app.pool)
        await BrokerAudit(broker, "operator-cli", org).record(
            AuditStep.PLANNED, app_id=app.okta_app_id, okta_group_id=group_id, plan_version=version,
            event_type=cause, detail=f"delete of the target group requested by {operator}")
        plan = GroupPlanned(org=org, app_id=app.okta_app_id, okta_group_id=group_id, version=version,
                            action=GroupAction.DELETE, cause=cause)
        await broker.publish(plan, exchange=PLANS_EXCHANGE, routing_key=app.pool, persist=True)
        if wait_s <= 0:
            return 0, f"delete planned (v{version}); follow it with GET /audit?group={group_id}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            done = await db.audit.find_one({"okta_group_id": group_id, "plan_version": version,
                                            "service": "scim-dispatcher",
                                            "step": {"$in": ["applied", "skipped", "dead_lettered"]}})
            if done:
                return (0 if done["step"] == "applied" else 1), f"{done['step']}: {done.get('detail')}"
            await asyncio.sleep(0.5)
        return 1, f"delete planned (v{version}) but no outcome within {wait_s:.0f}s; is a dispatcher running?"
    finally:
        await broker.stop()
        await client.close()


if __name__ == "__main__":
    cli()
