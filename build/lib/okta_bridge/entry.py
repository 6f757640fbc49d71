"""Process entry: configuration errors end the process with one clear line and exit code 2, not a traceback; any
other error's traceback is printed with secrets masked and without local variables.

Services start through :func:`run_service`; operator commands (typer) are made by :func:`cli_app` and run by
:func:`run_cli`. A traceback that shows local variables (typer's default, through rich) prints the settings
objects and connection URLs of every frame: a bad ``RABBITMQ_URL`` printed its password five times.
"""

from __future__ import annotations

import gc
import sys
import traceback
from typing import Any, Callable

from pydantic import ValidationError

from okta_bridge.apiauth import ApiTokensError
from okta_bridge.connectors import ConnectorsFileError
from okta_bridge.redact import error_text, mask_secrets
from okta_bridge.stores.meta import OrgMismatchError
from okta_bridge.telemetry import TracingSettingsError
from okta_bridge.topology import TopologyMissing

__all__ = ["cli_app", "describe_settings_error", "quiet_collector", "run_cli", "run_service"]

# Python's cycle collector runs its youngest generation every 700 container allocations by default; at a few hundred
# changes a second that promoted in-flight batches into the oldest generation, whose full collections walked every
# object of the process (the imported libraries included): 20-30 pauses of up to 100 ms in a 100 s benchmark, in
# every service. Objects without cycles are freed by reference counting whatever these numbers say.
GC_GEN0_THRESHOLD = 20_000


def describe_settings_error(exc: ValidationError) -> str:
    """A settings error as one line: the class, each field and what is wrong; never the value given."""
    fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(settings)'}: {e['msg']}"
                       for e in exc.errors(include_input=False, include_url=False))
    return error_text(f"{exc.title}: {fields}", limit=2_000)


def _print_masked_traceback(name: str, exc: BaseException) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    print(mask_secrets(text).rstrip("\n"), file=sys.stderr)
    print(f"{name}: failed: {error_text(f'{type(exc).__name__}: {exc}')}", file=sys.stderr)


def quiet_collector() -> None:
    """Freeze what is alive once the service's modules are imported (classes, schemas, the libraries' tables: they
    live as long as the process) so no collection walks them again, and collect the youngest generation less often.
    Cyclic garbage made while running is still collected; the tests check both."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def run_service(name: str, main: Callable[[], object]) -> None:
    quiet_collector()
    try:
        main()
    except (ConnectorsFileError, OrgMismatchError, TopologyMissing, ApiTokensError, TracingSettingsError) as exc:
        print(f"{name}: cannot start: {mask_secrets(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:  # a setting (BridgeSettings, OktaSettings, the service's own) is wrong
        print(f"{name}: cannot start: {describe_settings_error(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - printed as Python would, with secrets masked
        _print_masked_traceback(name, exc)
        sys.exit(1)


def cli_app(**kwargs: Any):
    """A typer app whose tracebacks never show local variables (typer's default shows them)."""
    import typer

    kwargs.setdefault("add_completion", False)
    return typer.Typer(pretty_exceptions_show_locals=False, **kwargs)


def run_cli(name: str, app: Callable[[], object]) -> None:
    """Run an operator command: a settings error is one line (exit 2), anything else a masked traceback (exit 1)."""
    try:
        app()
    except ValidationError as exc:
        print(f"{name}: {describe_settings_error(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001
        _print_masked_traceback(name, exc)
        sys.exit(1)
