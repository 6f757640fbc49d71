"""Operator commands for the bridge as a whole (typer): ``python -m okta_bridge.ops COMMAND``.

``dead-letters list | show ID | replay ID… | replay --all | drop ID…``: see :mod:`okta_bridge.deadletters`.
Settings come from the same environment as the services (``RABBITMQ_URL``, ``OKTA_ORG_URL``, ``CONNECTORS_FILE``).
"""

from __future__ import annotations

import asyncio
import getpass

import typer
from rich.console import Console
from rich.table import Table

from okta_bridge.connectors import ConnectorsFileError, load_connectors
from okta_bridge.deadletters import DeadLetters, as_json
from okta_bridge.settings import BridgeSettings, OktaSettings

cli = typer.Typer(add_completion=False, help=__doc__)
dead = typer.Typer(add_completion=False, help="List, inspect, replay or drop dead letters (audited).")
cli.add_typer(dead, name="dead-letters")


def _letters(operator: str | None = None) -> DeadLetters:
    base = BridgeSettings()
    return DeadLetters(base.rabbitmq_url.get_secret_value(), OktaSettings().org_url,
                       operator or getpass.getuser())


@dead.command("list")
def list_(limit: int = typer.Option(1000, help="at most this many")) -> None:
    """One line per dead letter: id, kind, app, user/group, reason."""
    letters = asyncio.run(_letters().list(limit))
    table = Table("id", "kind", "app", "user", "group", "attempts", "reason")
    for letter in letters:
        s = letter.summary
        table.add_row(letter.id, letter.kind, s["app"], s["user"], s["group"], str(letter.attempts or ""),
                      letter.reason[:120])
    Console(width=200).print(table)
    typer.echo(f"{len(letters)} dead letter(s)")


@dead.command("show")
def show(letter_id: str) -> None:
    """The whole dead letter: reason, headers and message."""
    for letter in asyncio.run(_letters().list()):
        if letter.id == letter_id:
            typer.echo(as_json(letter))
            return
    typer.echo(f"no dead letter {letter_id}", err=True)
    raise typer.Exit(1)


@dead.command("replay")
def replay(ids: list[str] = typer.Argument(None), all_: bool = typer.Option(False, "--all"),
           operator: str = typer.Option(None, envvar="USER", help="who replays (recorded in the audit)"),
           connectors_file: str = typer.Option(None, help="default: CONNECTORS_FILE")) -> None:
    """Send dead letters back where they came from; a plan keeps its version (an old one is skipped as stale)."""
    _take(ids, all_, operator, connectors_file, "replay")


@dead.command("drop")
def drop(ids: list[str] = typer.Argument(...), yes: bool = typer.Option(False, "--yes"),
         operator: str = typer.Option(None, envvar="USER", help="who drops (recorded in the audit)")) -> None:
    """Remove dead letters for good (audited)."""
    if not yes:
        typer.echo("refusing without --yes: dropped dead letters are gone", err=True)
        raise typer.Exit(2)
    _take(ids, False, operator, None, "drop")


def _take(ids: list[str] | None, all_: bool, operator: str | None, connectors_file: str | None, action) -> None:
    if not ids and not all_:
        typer.echo("name dead letter ids, or --all", err=True)
        raise typer.Exit(2)
    try:
        apps = load_connectors(connectors_file or BridgeSettings().connectors_file).by_app_id()
    except ConnectorsFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    chosen = "all" if all_ else set(ids or ())
    results = asyncio.run(_letters(operator).take(chosen, apps, action))
    for letter, outcome in results:
        typer.echo(f"{letter.id} {letter.kind}: {outcome}")
    missing = set() if chosen == "all" else chosen - {letter.id for letter, _ in results}
    for letter_id in sorted(missing):
        typer.echo(f"{letter_id}: no such dead letter", err=True)
    failed = missing or any(not o.startswith(("replayed", "dropped")) for _, o in results)
    raise typer.Exit(1 if failed else 0)


if __name__ == "__main__":
    cli()
