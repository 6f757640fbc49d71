"""Secrets never leak through errors: header values checked at start, every log handler and span masked, CLI
tracebacks without locals (issue 9, item 12)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

from okta_bridge import redact
from okta_bridge.connectors import ConnectorsFileError, load_connectors
from okta_bridge.logs import register_secret, setup_logging
from okta_bridge.settings import BridgeSettings, OktaSettings
from okta_bridge.telemetry import MaskingSpanExporter

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "00aSecretTokenValue1234"


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level, factory = root.handlers[:], root.level, logging.getLogRecordFactory()
    secrets = set(redact._SECRETS)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.setLogRecordFactory(factory)
    redact._SECRETS.clear()
    redact._SECRETS.update(secrets)
    redact._compiled = None


# --- header values refused at start -----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [TOKEN + "\n", " " + TOKEN, TOKEN[:5] + "\r\nX-Evil: 1" + TOKEN[5:],
                                 TOKEN + "\x1b"])
def test_an_okta_token_with_whitespace_or_control_characters_is_refused_naming_the_setting(monkeypatch, bad):
    monkeypatch.setenv("OKTA_API_TOKEN", bad)
    with pytest.raises(ValidationError) as caught:
        OktaSettings()
    text = str(caught.value)
    assert "OKTA_API_TOKEN" in text
    assert TOKEN[:8] not in text and "Evil" not in text


def test_a_bad_connection_url_is_not_quoted_in_the_settings_error(monkeypatch):
    monkeypatch.setenv("PREFETCH", "many")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://bridge:hunter2secret@rabbit/")
    monkeypatch.setenv("MONGODB_URL", "mongodb://bridge:hunter2secret@mongo/")
    with pytest.raises(ValidationError) as caught:
        BridgeSettings(prefetch="many")  # type: ignore[arg-type]
    assert "hunter2secret" not in str(caught.value)


@pytest.mark.parametrize("auth, env", [
    ({"type": "header", "value_env": "JIRA_TOKEN", "value_prefix": "Bearer "}, {"JIRA_TOKEN": TOKEN + "\t\n"}),
    ({"type": "header", "value_env": "JIRA_TOKEN"}, {"JIRA_TOKEN": "Bearer " + TOKEN + "\x7f"}),
    ({"type": "basic", "username_env": "JIRA_USER", "password_env": "JIRA_TOKEN"},
     {"JIRA_USER": "bridge", "JIRA_TOKEN": TOKEN + " \r\n"}),
    ({"type": "header", "value_env": "JIRA_TOKEN"}, {"JIRA_TOKEN": TOKEN[:10] + "\n" + TOKEN[10:]}),
])
def test_a_connector_secret_with_a_control_character_or_surrounding_whitespace_is_refused(tmp_path, monkeypatch, auth,
                                                                                          env):
    """One trailing newline is stripped (test_tls.py: a secret file saved with one); what is left must be clean."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "connectors.yaml"
    path.write_text(f"apps:\n  - okta_app_id: 0oa1b2c3d4e5f6g7h8i9\n    name: jira\n    base_url: https://jira.lan/scim/v2/\n"
                    f"    auth: {auth!r}\n".replace("'", '"'))
    with pytest.raises(ConnectorsFileError) as caught:
        load_connectors(path)
    assert "JIRA_TOKEN" in str(caught.value)
    assert TOKEN[:8] not in str(caught.value)


def test_a_basic_password_may_hold_non_ascii_letters_but_a_bearer_token_may_not():
    assert redact.check_header_value("P", "pässwörd", ascii_only=False) == "pässwörd"
    with pytest.raises(ValueError, match="^T: .*non-ASCII"):
        redact.check_header_value("T", "Bearer tökén")


# --- logs: every handler, tracebacks included --------------------------------------------------------------------

def test_every_handler_masks_secrets_url_passwords_and_tracebacks(restore_logging, capsys):
    early_stream, late_stream = io.StringIO(), io.StringIO()
    early = logging.getLogger("test.faststream_like")  # its own handler, not propagating: FastStream's shape
    early.propagate = False
    early.handlers[:] = [logging.StreamHandler(early_stream)]
    setup_logging("test")
    register_secret(TOKEN)
    late = logging.getLogger("test.uvicorn_like")  # a handler a library adds after start: uvicorn's shape
    late.propagate = False
    late.handlers[:] = [logging.StreamHandler(late_stream)]
    try:
        raise RuntimeError(f"Illegal header value b'SSWS {TOKEN}\\n' for amqp://bridge:pw-9z8y7x@rabbit:5672/")
    except RuntimeError:
        for logger in (logging.getLogger("translator"), early, late):
            logger.exception("request failed with Authorization %s on %s", f"Bearer {TOKEN}",
                             "mongodb://bridge:pw-9z8y7x@mongo:27017/")
    outputs = {"root": capsys.readouterr().err, "early": early_stream.getvalue(), "late": late_stream.getvalue()}
    for where, text in outputs.items():
        assert "request failed" in text and "Traceback" in text, where
        assert TOKEN not in text and "pw-9z8y7x" not in text, (where, text)
        assert "amqp://bridge:***@rabbit" in text and "mongodb://bridge:***@mongo" in text, where


def test_an_unexpected_errors_traceback_in_the_log_carries_no_persons_values(restore_logging, capsys):
    """A validation error quotes the value that failed (a profile); an error's text may hold an email: the logged
    traceback masks both, and keeps the lines of code."""
    from pydantic import BaseModel

    class Profile(BaseModel):
        login: str
        age: int

    setup_logging("test")
    payload = {"login": "ada.lovelace@example.com", "age": {"name": "Ada Lovelace"}}  # not on a traceback's line
    missing = "no link for grace.hopper@example.com"
    try:
        Profile.model_validate(payload)
    except ValidationError:
        logging.getLogger("translator").exception("a batch of 1 events failed")
    try:
        raise KeyError(missing)
    except KeyError:
        logging.getLogger("translator").exception("a batch of 1 events failed")
    text = capsys.readouterr().err
    assert text.count("Traceback") == 2 and "Profile.model_validate" in text and "input_value=***" in text
    assert "Lovelace" not in text and "ada.lovelace" not in text and "grace.hopper" not in text


def test_url_passwords_are_masked_without_being_registered():
    assert redact.mask_secrets("cannot reach mongodb+srv://app:p%40ss@db.lan/x and amqps://u:v@h/") == \
        "cannot reach mongodb+srv://app:***@db.lan/x and amqps://u:***@h/"


# --- spans ---------------------------------------------------------------------------------------------------------

def test_recorded_exceptions_are_masked_and_bounded_before_export(restore_logging):
    register_secret(TOKEN)
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(MaskingSpanExporter(exported)))
    tracer = provider.get_tracer("test")
    with pytest.raises(ValueError):
        with tracer.start_as_current_span("okta GET /api/v1/users/{id}"):
            raise ValueError(f"Illegal header value b'SSWS {TOKEN}\\n'\n" + "ann@acme.com refused " * 4000)
    (span,) = exported.get_finished_spans()
    (event,) = [e for e in span.events if e.name == "exception"]
    message, stack = event.attributes["exception.message"], event.attributes["exception.stacktrace"]
    assert TOKEN not in message and TOKEN not in stack
    assert "ann@acme.com" not in message and "ann@acme.com" not in stack
    assert "\n" not in message and len(message) <= redact.TEXT_LIMIT
    assert TOKEN not in (span.status.description or "")


# --- processes: a service and an operator command ----------------------------------------------------------------

def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": "services:shared", "OTEL_TRACES_EXPORTER": "none", "COLUMNS": "200", **env}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)


def test_a_service_refuses_a_token_with_a_newline_in_one_line_naming_the_setting():
    run = _run(["-m", "translator"], OKTA_API_TOKEN=TOKEN + "\n")
    assert run.returncode == 2, run.stderr
    assert "OKTA_API_TOKEN" in run.stderr and "Traceback" not in run.stderr
    assert TOKEN not in run.stdout + run.stderr


def test_an_operator_command_never_prints_the_broker_password_or_locals():
    run = _run(["-m", "bridgectl", "dlq", "list"],
               RABBITMQ_URL="amqp://bridge:Sekr1tPass@127.0.0.1:1/", OKTA_ORG_URL="https://acme.okta.com")
    assert run.returncode == 1
    assert "Connect call failed" in run.stderr  # the error is still told
    assert "Sekr1tPass" not in run.stdout + run.stderr
    assert "locals" not in run.stdout + run.stderr


def test_every_typer_app_hides_locals():
    import typer

    from bridgectl import app, guard, ops, topology_cmd

    apps = [v for m in (app, guard, ops, topology_cmd) for v in vars(m).values() if isinstance(v, typer.Typer)]
    assert len(apps) >= 5
    assert all(app.pretty_exceptions_show_locals is False for app in apps)


def test_delete_group_refuses_a_group_id_that_is_not_an_okta_id(tmp_path):
    from typer.testing import CliRunner

    from bridgectl.app import app as cli

    path = tmp_path / "connectors.yaml"
    path.write_text("apps:\n  - {okta_app_id: 0oa1b2c3d4e5f6g7h8i9, name: jira, base_url: 'https://jira.lan/scim/v2/', "
                    "auth: {type: none}}\n")
    result = CliRunner().invoke(cli, ["delete-group", "--app", "jira", "--group", "../../groups/00g1", "--yes",
                                      "--connectors-file", str(path)])
    assert result.exit_code == 2 and "not an Okta group id" in result.output


def test_credentials_after_a_scheme_word_are_masked_but_prose_stays_readable():
    assert redact.mask_secrets("Illegal header value b'Bearer s3cr3tTok\\n'") == "Illegal header value b'Bearer ***\\n'"
    assert redact.mask_secrets("Authorization: Basic YnJpZGdlOnB3ZA==") == "Authorization: Basic ***"
    assert redact.mask_secrets("SSWS 00aSecretTokenValue1234 refused") == "SSWS *** refused"
    assert redact.mask_secrets("Basic authentication required") == "Basic authentication required"


def test_the_simulators_command_line_never_quotes_a_malformed_token():
    from okta_simulator.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["--token", "Sekr1tSimToken"])
    assert "VALUE:00Tid" in str(caught.value.code) and "Sekr1tSimToken" not in str(caught.value.code)


def test_a_record_made_without_the_masking_factory_is_masked_by_the_handlers_formatter():
    """A library may build its records itself (``logging.makeLogRecord``, a record from another process): the
    formatter wrapped around every handler masks what the record factory never saw."""
    from okta_bridge.logs import MaskingFormatter

    redact.register_secret("formatter-layer-s3cret")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(MaskingFormatter(logging.Formatter("%(message)s")))
    record = logging.makeLogRecord({"msg": "connecting to amqp://bridge:Pa55word@rabbit/ with %s",
                                    "args": ("formatter-layer-s3cret",), "levelno": logging.ERROR})
    handler.emit(record)
    line = out.getvalue()
    assert "formatter-layer-s3cret" not in line and "Pa55word" not in line
    assert "amqp://bridge:***@rabbit/" in line
