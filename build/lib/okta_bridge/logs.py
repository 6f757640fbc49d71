"""Log lines carry the trace and span ids and the event; secrets are masked in every line of every handler, tracebacks included.

Masking happens twice, so that no handler is missed: every record's message, arguments and traceback are masked
when the record is made (the record factory, whatever handler later formats it: FastStream's, uvicorn's or one a
library adds after start), and every handler's formatter is wrapped to mask its whole output (:func:`mask_handlers`,
run at start for the handlers known then, the root's included). What is masked is :func:`okta_bridge.redact.
mask_secrets`: the secrets registered at start, URL passwords and credentials after an auth scheme word.

Lines go to stderr as JSON, one object a line (``time``, ``service``, ``level``, ``logger``, ``message``,
``event_uuid``, ``trace_id``, ``span_id``, ``exception``; absent keys are omitted), or as text when stderr is a
terminal; ``LOG_FORMAT`` (``json``, ``text``, ``auto``) overrides that, ``LOG_LEVEL`` sets the level (``INFO``).
FastStream's and uvicorn's loggers write through the same handler, in the same format. The event uuid is the
record's own (``extra={"event_uuid": …}``) or that of the span current when the line is written.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from okta_bridge.redact import mask_secrets, mask_traceback, register_secret, register_url_secrets
from okta_bridge.telemetry import ATTR

__all__ = ["JsonFormatter", "MaskingFormatter", "TextFormatter", "log_level", "mask_handlers", "register_secret",
           "register_settings_secrets", "setup_logging"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# libraries whose own handlers are replaced by the bridge's (same format, same masking)
LIBRARY_LOGGERS = ("faststream", "faststream.access", "faststream.access.rabbit", "uvicorn", "uvicorn.error",
                   "uvicorn.access")


def register_settings_secrets(*urls: str) -> None:
    """Passwords inside connection URLs (RabbitMQ, MongoDB) are secrets too."""
    register_url_secrets(*urls)


class MaskingFormatter(logging.Formatter):
    """Wraps a handler's formatter: its whole output (message, traceback, stack) is masked."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(self.inner.format(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return mask_traceback(self.inner.formatException(ei))


def mask_handlers() -> None:
    """Wrap the formatter of every handler of every logger known now (the root's, FastStream's, uvicorn's); once the
    bridge's handler is set up, FastStream's and uvicorn's loggers (configured by them since, uvicorn's at its
    start) are made to write through it instead of their own."""
    if any(isinstance(h, _BridgeHandler) for h in logging.getLogger().handlers):
        _adopt_library_loggers()
    loggers: list[logging.Logger | logging.PlaceHolder] = [logging.getLogger()]
    loggers += list(logging.Logger.manager.loggerDict.values())
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if not isinstance(handler.formatter, MaskingFormatter):
                handler.setFormatter(MaskingFormatter(handler.formatter))


def _mask_arg(value: Any) -> Any:
    if isinstance(value, str):
        return mask_secrets(value)
    if value is None or isinstance(value, (int, float, bool)):
        return value
    text = str(value)
    masked = mask_secrets(text)
    return value if masked == text else masked  # an object whose text holds a secret (a URL, an error)


_base_factory = logging.getLogRecordFactory()


def _masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    try:
        if isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        else:
            record.msg = _mask_arg(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_mask_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _mask_arg(v) for k, v in record.args.items()}
        if record.exc_info and record.exc_info[0] is not None:  # every formatter uses exc_text once it is set
            record.exc_text = mask_traceback("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
    except Exception:  # noqa: BLE001 - logging must never fail; the handler's formatter masks the line anyway
        pass
    return record


class _BridgeHandler(logging.StreamHandler):
    """The root's handler set up by :func:`setup_logging` (recognised when library loggers are adopted)."""


def _context(record: logging.LogRecord) -> tuple[str | None, str | None, str | None]:
    """The trace id, span id and event uuid of the line: the span current when it is written (and its
    ``okta.event.uuid``), unless the record names its own event."""
    span = trace.get_current_span()
    ctx = span.get_span_context()
    event = getattr(record, "event_uuid", None)
    if event is None:
        attributes = getattr(span, "attributes", None)  # an SDK span's; a non-recording one has none
        event = attributes.get(ATTR.EVENT_UUID) if attributes else None
    if not ctx.is_valid:
        return None, None, event
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), event


class JsonFormatter(logging.Formatter):
    """One JSON object a line; keys without a value are left out."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        trace_id, span_id, event = _context(record)
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "service": self.service, "level": record.levelname, "logger": record.name,
            "message": record.getMessage()}
        if event:
            line["event_uuid"] = str(event)
        if trace_id:
            line["trace_id"], line["span_id"] = trace_id, span_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """For a person at a terminal: ``time service LEVEL [trace=… event=…] logger: message``."""

    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s " + service.replace("%", "%%") + " %(levelname)s%(bridge_context)s %(name)s: "
                         "%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        trace_id, _, event = _context(record)
        parts = ([f"trace={trace_id}"] if trace_id else []) + ([f"event={event}"] if event else [])
        record.bridge_context = (" " + " ".join(parts)) if parts else ""
        return super().format(record)


def log_level(value: str | None) -> tuple[int, str | None]:
    """``LOG_LEVEL`` as a level, and a complaint when it is not one (the level is INFO then)."""
    name = (value or "INFO").strip().upper()
    if name in LEVELS:
        return logging.getLevelName(name), None
    return logging.INFO, f"LOG_LEVEL={value!r} is not one of {', '.join(LEVELS)}: logging at INFO"


def _adopt_library_loggers() -> None:
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def setup_logging(service: str, level: str | None = None) -> None:
    """Logging of a service: to stderr, as JSON lines (text on a terminal, or as ``LOG_FORMAT`` says), at
    ``level`` or else ``LOG_LEVEL``; every line masked."""
    logging.setLogRecordFactory(_masked_record)
    numeric, complaint = log_level(level or os.environ.get("LOG_LEVEL"))
    form = os.environ.get("LOG_FORMAT", "auto").strip().lower()
    as_text = form == "text" or (form != "json" and sys.stderr.isatty())
    handler = _BridgeHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter(TextFormatter(service) if as_text else JsonFormatter(service)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for noisy in ("httpx", "httpcore", "aiormq", "aio_pika", "pymongo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, numeric))
    _adopt_library_loggers()
    mask_handlers()
    if complaint:
        logging.getLogger(__name__).warning(complaint)
    if form not in ("auto", "json", "text"):
        logging.getLogger(__name__).warning("LOG_FORMAT=%r is not one of auto, json, text: using auto", form)
