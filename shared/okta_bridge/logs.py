"""Log lines carry the trace id; secrets are masked in every line of every handler, tracebacks included.

Masking happens twice, so that no handler is missed: every record's message, arguments and traceback are masked
when the record is made (the record factory, whatever handler later formats it: FastStream's, uvicorn's or one a
library adds after start), and every handler's formatter is wrapped to mask its whole output (:func:`mask_handlers`,
run at start for the handlers known then, the root's included). What is masked is :func:`okta_bridge.redact.
mask_secrets`: the secrets registered at start, URL passwords and credentials after an auth scheme word.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

from okta_bridge.redact import mask_secrets, register_secret, register_url_secrets
from okta_bridge.telemetry import current_trace_id

__all__ = ["MaskingFormatter", "mask_handlers", "register_secret", "register_settings_secrets", "setup_logging"]


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
        return mask_secrets(self.inner.formatException(ei))


def mask_handlers() -> None:
    """Wrap the formatter of every handler of every logger known now (the root's, FastStream's, uvicorn's)."""
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
            record.exc_text = mask_secrets("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
    except Exception:  # noqa: BLE001 - logging must never fail; the handler's formatter masks the line anyway
        pass
    return record


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = current_trace_id() or "-"
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    logging.setLogRecordFactory(_masked_record)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context())
    handler.setFormatter(MaskingFormatter(logging.Formatter(
        f"%(asctime)s {service} %(levelname)s trace=%(trace_id)s %(name)s: %(message)s")))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiormq", "aio_pika", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    mask_handlers()
