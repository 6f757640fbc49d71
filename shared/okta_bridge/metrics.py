"""Prometheus metrics the services share, and the HTTP endpoint that serves them (``METRICS_PORT``; 0: off).

``bridge_mongodb_commands_total{command}`` counts every command the service's MongoDB client sends (a PyMongo command
listener; connection handshakes and server heartbeats are not commands a client's operations send, and PyMongo does
not report them to command listeners): the database round trips the benchmark counts per change.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, start_http_server
from pymongo import monitoring

__all__ = ["GUARD_PAUSED", "MONGO_COMMANDS", "CommandCounter", "serve_metrics"]

log = logging.getLogger(__name__)
MONGO_COMMANDS = Counter("bridge_mongodb_commands_total", "MongoDB commands sent by this process", ["command"])
# 1 while the app's deactivation guard holds its deactivations (translator; refreshed from MongoDB every 30 s, so an
# operator's release shows within that)
GUARD_PAUSED = Gauge("bridge_guard_paused", "1 while the app's deactivations are held by the guard", ["app"])


class CommandCounter(monitoring.CommandListener):
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        MONGO_COMMANDS.labels(event.command_name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def serve_metrics(port: int) -> None:
    """``/metrics`` on ``port`` (all interfaces); a port already taken is logged, not fatal."""
    if not port:
        return
    try:
        start_http_server(port)
        log.info("metrics on :%d/metrics", port)
    except OSError as exc:
        log.warning("metrics port %d not available (%s): metrics off", port, exc)
