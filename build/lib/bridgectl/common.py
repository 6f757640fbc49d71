"""What every ``bridgectl`` command shares: ``--json``, the exit codes, the connectors file, names to ids."""

from __future__ import annotations

import getpass
import json
from datetime import date, datetime
from enum import Enum
from typing import Any, Callable, NoReturn

import typer
from rich.console import Console

from okta_bridge.connectors import AppConnector, ConnectorsFile, ConnectorsFileError, load_connectors
from okta_bridge.settings import BridgeSettings

__all__ = ["JSON", "OK", "WRONG", "BAD_INPUT", "bad_input", "console", "emit", "load", "operator_name", "resolve_app"]

OK, WRONG, BAD_INPUT = 0, 1, 2
JSON = typer.Option(False, "--json", help="one JSON document on stdout instead of tables")
CONNECTORS = typer.Option(None, "--connectors-file", help="default: CONNECTORS_FILE")
OPERATOR = typer.Option(None, "--as", envvar="USER", help="who does it, recorded in the audit (default: the OS user)")


def console() -> Console:
    return Console(width=200)


def bad_input(message: str) -> NoReturn:
    typer.echo(f"bridgectl: {message}", err=True)
    raise typer.Exit(BAD_INPUT)


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def emit(as_json: bool, data: Any, render: Callable[[], None]) -> None:
    """``data`` as JSON on stdout, or ``render()`` for people."""
    if as_json:
        typer.echo(json.dumps(data, default=_default, indent=2, sort_keys=True))
    else:
        render()


def load(connectors_file: str | None, secrets: bool = False) -> ConnectorsFile:
    """The connectors file; an unreadable one is bad input (exit 2). ``secrets``: the SCIM credentials are needed
    (commands that talk to a target)."""
    try:
        return load_connectors(connectors_file or BridgeSettings().connectors_file, secrets=secrets)
    except ConnectorsFileError as exc:
        bad_input(str(exc))


def resolve_app(connectors: ConnectorsFile, app: str) -> AppConnector:
    """An app by its connector name or its Okta app id; unknown: exit 2."""
    found = next((a for a in connectors.apps if app in (a.name, a.okta_app_id)), None)
    if found is None:
        names = ", ".join(sorted(a.name for a in connectors.apps)) or "none"
        bad_input(f"no app {app!r} in the connectors file (its apps: {names})")
    return found


def operator_name(given: str | None) -> str:
    return given or getpass.getuser()


def progress(items, description: str, enabled: bool = True):
    """Iterates ``items`` with a progress bar on stderr (long work: many held keys, many apps); none with ``--json``
    or when stderr is not a terminal."""
    from rich.progress import track

    items, err = list(items), Console(stderr=True)
    if not enabled or len(items) < 2 or not err.is_terminal:
        return items
    return track(items, description=description, console=err, transient=True)
