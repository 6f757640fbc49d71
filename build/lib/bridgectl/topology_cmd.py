"""``bridgectl topology apply | permissions``: declare the broker's topology (a one-shot job before the services,
as a user with configure rights), and print each service user's ``rabbitmqctl set_permissions`` command."""

from __future__ import annotations

import asyncio

import typer

from bridgectl.common import JSON, emit, load
from okta_bridge.entry import cli_app
from okta_bridge.settings import BridgeSettings
from okta_bridge.topology import apply as apply_topology
from okta_bridge.topology import permissions_for

topology = cli_app(help="Declare the broker's exchanges, queues and bindings; print each service user's rights.")


@topology.command("apply")
def apply(json_: bool = JSON) -> None:
    """Declare every exchange, queue and binding (idempotent). ``RABBITMQ_URL`` of a user with configure rights;
    ``CONNECTORS_FILE`` for the pools and their partition counts (its secrets are not needed)."""
    from urllib.parse import urlsplit

    from okta_bridge.logs import register_settings_secrets
    from okta_bridge.runtime import make_broker

    base = BridgeSettings()
    connectors = load(None)
    pools = {p: connectors.partitions(p) for p in connectors.pool_names()}
    register_settings_secrets(base.rabbitmq_url.get_secret_value(), base.mongodb_url.get_secret_value())

    async def run() -> None:
        broker = make_broker(base.rabbitmq_url.get_secret_value(), 1)
        await broker.connect()
        try:
            await apply_topology(broker, pools)
        finally:
            await broker.stop()

    try:
        asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - one clear line, never the URL's password
        text, password = str(exc)[:300], urlsplit(base.rabbitmq_url.get_secret_value()).password
        message = f"topology: apply failed: {type(exc).__name__}: {text.replace(password, '***') if password else text}"
        emit(json_, {"applied": False, "error": message}, lambda: typer.echo(message, err=True))
        raise typer.Exit(1) from None
    emit(json_, {"applied": True, "pools": pools},
         lambda: typer.echo("topology applied: " + ", ".join(f"pool {p} ({n} partitions)"
                                                              for p, n in sorted(pools.items()))))


@topology.command("permissions")
def permissions(vhost: str = typer.Option("/"),
                pools: str = typer.Option(None, help="comma-separated (default: the connectors file's)"),
                json_: bool = JSON) -> None:
    """Each service user's ``rabbitmqctl set_permissions`` command (``bridge-operator`` is bridgectl's user,
    ``bridge-console`` the web console's)."""
    if pools is None:
        connectors = load(None)
        pools = ",".join(sorted(connectors.pool_names()))
    chosen = [p for p in pools.split(",") if p]
    perms = permissions_for(chosen)
    emit(json_, {user: {"configure": p.configure, "write": p.write, "read": p.read, "command": p.command(user, vhost)}
                 for user, p in perms.items()},
         lambda: [typer.echo(p.command(user, vhost)) for user, p in perms.items()])
