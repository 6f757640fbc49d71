"""``bridgectl``'s root: every command, each with ``--json``; exit codes in :mod:`bridgectl` (0 ok, 1 wrong or
differs, 2 bad input)."""

from __future__ import annotations

from bridgectl import __doc__ as DOC
from bridgectl.audit import audit
from bridgectl.connector_test import test_connector
from bridgectl.guard import guard
from bridgectl.oneuser import preview, provision
from bridgectl.ops import dead, parts
from bridgectl.status import status
from bridgectl.targets import delete_group, drift
from bridgectl.topology_cmd import topology
from okta_bridge.entry import cli_app, run_cli

app = cli_app(help=DOC, no_args_is_help=True)
app.command("status")(status)
app.command("audit")(audit)
app.command("test-connector")(test_connector)
app.command("preview")(preview)
app.command("provision")(provision)
app.command("drift")(drift)
app.command("delete-group")(delete_group)
app.add_typer(dead, name="dlq")
app.add_typer(parts, name="partitions")
app.add_typer(guard, name="guard")
app.add_typer(topology, name="topology")


def main() -> None:
    """The installed ``bridgectl`` script and ``python -m bridgectl``: a settings error is one line (exit 2),
    anything unexpected a masked traceback without locals (exit 1)."""
    run_cli("bridgectl", app)
