"""Operator commands for SCIM targets (typer): ``python -m scim_dispatcher.cli test-connectors``.

Like Okta's "Test Connector Configuration" button: for every app in the connectors file, GET the service provider
configuration (``/ServiceProviderConfigs`` for 1.1, ``/ServiceProviderConfig`` for 2.0) and ``/Users?count=2``.
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


if __name__ == "__main__":
    cli()
