"""Prometheus metrics the services share (served on ``METRICS_PORT`` by :mod:`okta_bridge.health`; 0: off).

Names follow Prometheus' conventions (the unit in the name, ``_total`` for counters) and every label is bounded: a
queue *family* (a pool's partition queues count as one), an exchange, an event type, an app (its connector name),
an HTTP method, a reason code (:class:`okta_bridge.contracts.Reason`), a rate-limit bucket, a pool. Never a user, a
group, an id or a URL. Each update is a dictionary lookup and an addition: cheap enough for every message.

``bridge_mongodb_commands_total{command}`` counts every command the service's MongoDB client sends (a PyMongo command
listener; connection handshakes and server heartbeats are not commands a client's operations send, and PyMongo does
not report them to command listeners): the database round trips the benchmark counts per change.

Queue backlogs are not here: RabbitMQ's own ``rabbitmq_prometheus`` plugin exports them once for the cluster
(``rabbitmq_queue_messages_ready``), not once per replica.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram
from pymongo import monitoring

__all__ = ["CONSUMED", "ACKED", "DEAD_LETTERS", "EVENTS_POLLED", "GUARD_PAUSED", "HOLDS", "MONGO_COMMANDS",
           "OKTA_RATE_LIMIT_REMAINING", "OKTA_RATE_LIMIT_WAITS", "OUTCOMES", "PARTITIONS_OWNED", "PLANS", "POLLER", "PUBLISHED", "REQUEUED",
           "RETRIES", "SCIM_REQUEST_SECONDS", "CommandCounter", "PollerClock", "queue_family"]

MONGO_COMMANDS = Counter("bridge_mongodb_commands_total", "MongoDB commands sent by this process", ["command"])
# 1 while the app's deactivation guard holds its deactivations (translator; refreshed from MongoDB every 30 s, so an
# operator's release shows within that)
GUARD_PAUSED = Gauge("bridge_guard_paused", "1 while the app's deactivations are held by the guard", ["app"])

# ------------------------------------------------------------------------------------------------ messages (bus.py)
CONSUMED = Counter("bridge_messages_consumed_total", "messages delivered to this process, per queue family", ["queue"])
ACKED = Counter("bridge_messages_acked_total", "messages acknowledged once their effects were durable", ["queue"])
REQUEUED = Counter("bridge_messages_requeued_total", "messages given back to their queue (nack, requeue)", ["queue"])
PUBLISHED = Counter("bridge_messages_published_total", "messages published and confirmed by the broker, per exchange "
                    "(the default exchange: the queue family addressed)", ["exchange"])
RETRIES = Counter("bridge_retries_total", "messages sent to a retry tier", ["queue"])
HOLDS = Counter("bridge_holds_total", "messages parked in a hold queue (circuit open, group not ready)", ["queue"])
DEAD_LETTERS = Counter("bridge_dead_letters_total", "messages dead-lettered by the bridge", ["queue"])

# ----------------------------------------------------------------------------------------------------------- poller
EVENTS_POLLED = Counter("bridge_poller_events_total", "System Log events read that mean work, by event type",
                        ["event_type"])

# ------------------------------------------------------------------------------------------------------- translator
PLANS = Counter("bridge_plans_total", "plans published, by app and action", ["app", "action"])

# ------------------------------------------------------------------------------------------------------- dispatcher
SCIM_REQUEST_SECONDS = Histogram("bridge_scim_request_duration_seconds", "SCIM requests to a target, by app and "
                                 "method (the answer received, whatever its status)", ["app", "method"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
OUTCOMES = Counter("bridge_outcomes_total", "outcomes of plans (audit statuses' reason codes), by app and reason",
                   ["app", "reason"])
PARTITIONS_OWNED = Gauge("bridge_dispatcher_partitions_owned", "partitions of the pool this replica consumes",
                         ["pool"])

# ------------------------------------------------------------------------------------------------------------- okta
OKTA_RATE_LIMIT_REMAINING = Gauge("bridge_okta_rate_limit_remaining", "X-Rate-Limit-Remaining of the bucket's last "
                                  "answer", ["bucket"])
OKTA_RATE_LIMIT_WAITS = Counter("bridge_okta_rate_limit_waits_total", "waits for a bucket's window to reset (its "
                                "remaining calls down to the reserve)", ["bucket"])

_PARTITION = re.compile(r"\.p\d{3}$|\.\d{3}$")


@lru_cache(maxsize=1024)  # a handful of queue names per process: the regex runs once per name, not per message
def queue_family(name: str) -> str:
    """A pool's partition queue (``dispatcher.default.p003``) or partition routing key (``default.003``) counts as its
    pool's family: the label stays bounded however many partitions there are."""
    return _PARTITION.sub("", name) if name and name[-1].isdigit() else (name or "(default)")


class PollerClock:
    """``bridge_poller_last_success_age_seconds`` and ``bridge_poller_newest_event_age_seconds``, computed at scrape
    time from two timestamps the poller sets (so an idle or stuck poller's age keeps growing between scrapes)."""

    def __init__(self) -> None:
        self.last_success: float | None = None  # time.time() of the last page read and handled
        self.newest_event: float | None = None  # the ``published`` time of the newest event seen (epoch seconds)
        self.leading = False
        self._exported = False

    def export(self) -> None:
        """Registers the gauges: in the poller's process only (elsewhere they would be NaN series)."""
        if self._exported:
            return
        self._exported = True
        Gauge("bridge_poller_last_success_age_seconds", "seconds since the last successful System Log poll "
              "(NaN before the first)").set_function(lambda: self._age(self.last_success))
        Gauge("bridge_poller_newest_event_age_seconds", "age of the newest System Log event seen "
              "(NaN before the first)").set_function(lambda: self._age(self.newest_event))
        Gauge("bridge_poller_leader", "1 while this replica holds the poller lease").set_function(
            lambda: 1.0 if self.leading else 0.0)

    @staticmethod
    def _age(stamp: float | None) -> float:
        return float("nan") if stamp is None else max(0.0, time.time() - stamp)

    def polled(self) -> None:
        self.last_success = time.time()

    def saw_event(self, published: float) -> None:
        if self.newest_event is None or published > self.newest_event:
            self.newest_event = published


POLLER = PollerClock()


class CommandCounter(monitoring.CommandListener):
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        MONGO_COMMANDS.labels(event.command_name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass
