"""Log lines carry the trace id; secrets registered at start are masked in every record."""

from __future__ import annotations

import logging
import sys

from okta_bridge.telemetry import current_trace_id

__all__ = ["register_secret", "register_settings_secrets", "setup_logging"]

_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _SECRETS.add(value)


def register_settings_secrets(*urls: str) -> None:
    """Passwords inside connection URLs (RabbitMQ, MongoDB) are secrets too."""
    from urllib.parse import urlsplit

    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password and password not in {"guest"}:
            register_secret(password)


def _mask(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = current_trace_id() or "-"
        if _SECRETS:
            record.msg = _mask(record.getMessage())
            record.args = None
        return True


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context())
    handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s trace=%(trace_id)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "aiormq", "aio_pika", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
