"""Health, readiness and metrics of a service process (okta_bridge.health, okta_bridge.metrics): the readiness
function over its checks, the HTTP endpoints on a real port, and the bridge's own metrics where the code counts them.
The real-process checks (a broker connection dropped under a running service, every panel of the dashboard) are in
tests/e2e/test_observability.py."""

from __future__ import annotations

import asyncio
import json
import socket
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import REGISTRY, generate_latest
from pydantic import ValidationError

from okta_bridge import okta_client
from okta_bridge.bus import Delivery
from okta_bridge.health import Readiness, broker_check, channels_check, create_app, mongo_check, serve_health
from okta_bridge.metrics import POLLER, queue_family
from okta_bridge.audit import AuditPublisher
from okta_bridge.contracts import AuditStep, PlanAction, Reason, ScimOperationPlanned
from okta_bridge.runtime import PartitionRoutes, PlanPublisher, QueueRoutes, Republisher
from tests.unit.test_okta_client import FakeOkta, client, okta


APP = "0oa1mtrcs00000000001"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class FakeConnection:
    def __init__(self) -> None:
        self.is_closed = False
        self.connected = asyncio.Event()
        self.connected.set()


async def readyz(readiness: Readiness) -> tuple[int, dict]:
    transport = httpx.ASGITransport(app=create_app(readiness))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as http:
        response = await http.get("/readyz")
    return response.status_code, response.json()


async def test_not_ready_until_started_then_ready_while_every_check_passes():
    readiness = Readiness()
    connection = FakeConnection()
    readiness.add("rabbitmq", broker_check(connection))
    readiness.add("role", lambda: (True, "standing by"))
    assert await readyz(readiness) == (503, {"status": "not ready", "checks": {"service": "starting"}})
    readiness.started = True
    assert await readyz(readiness) == (200, {"status": "ready",
                                             "checks": {"rabbitmq": "connected", "role": "standing by"}})


async def test_a_dropped_broker_connection_is_not_ready_until_it_is_back():
    """aio-pika clears ``connected`` the moment the socket drops and sets it once the robust connection is back."""
    readiness, connection = Readiness(), FakeConnection()
    readiness.add("rabbitmq", broker_check(connection))
    readiness.started = True
    connection.connected.clear()
    assert await readyz(readiness) == (503, {"status": "not ready", "checks": {"rabbitmq": "reconnecting"}})
    connection.connected.set()
    assert (await readyz(readiness))[0] == 200
    connection.is_closed = True
    assert (await readyz(readiness))[1]["checks"] == {"rabbitmq": "closed"}


async def test_a_closed_consumer_channel_or_a_failing_check_is_not_ready_and_names_only_the_error_kind():
    readiness = Readiness()
    channel = SimpleNamespace(is_closed=False)
    readiness.add("consumers", channels_check(lambda: [channel, None]))

    def broken() -> tuple[bool, str]:
        raise ConnectionError("mongodb://user:secret@db/ refused")
    readiness.add("mongodb", broken)
    readiness.started = True
    status, body = await readyz(readiness)
    assert status == 503 and body["checks"] == {"consumers": "1/1 open", "mongodb": "ConnectionError"}
    assert "secret" not in json.dumps(body)
    channel.is_closed = True
    assert (await readyz(readiness))[1]["checks"]["consumers"] == "0/1 open"


async def test_mongo_check_pings_with_a_timeout_and_reuses_its_answer():
    calls = []

    class Admin:
        async def command(self, name):
            calls.append(name)
            if len(calls) > 1:
                await asyncio.sleep(10)  # the database stopped answering
            return {"ok": 1}
    check = mongo_check(SimpleNamespace(admin=Admin()), timeout_s=0.1, cache_s=0.2)
    assert await check() == (True, "ok")
    assert await check() == (True, "ok") and calls == ["ping"]  # cached
    await asyncio.sleep(0.25)
    assert await check() == (False, "TimeoutError")


async def test_healthz_readyz_and_metrics_are_served_on_the_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    readiness = Readiness()
    POLLER.export()
    server = await serve_health(port, readiness, host="127.0.0.1")
    assert server is not None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).json() == {"status": "alive"}
            assert (await http.get("/readyz")).status_code == 503
            metrics = await http.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            for name in ("bridge_mongodb_commands_total", "bridge_messages_consumed_total",
                         "bridge_poller_last_success_age_seconds", "bridge_scim_request_duration_seconds",
                         "bridge_outcomes_total", "bridge_okta_rate_limit_remaining",
                         "bridge_dispatcher_partitions_owned", "bridge_retries_total"):
                assert f"# TYPE {name}" in metrics.text, name
        assert await serve_health(port, Readiness(), host="127.0.0.1") is None  # taken: logged, not fatal
    finally:
        await server.stop()
    assert await serve_health(0, readiness) is None  # 0: off


def test_partition_queues_count_as_their_pool():
    assert queue_family("dispatcher.hr.p007") == "dispatcher.hr"
    assert queue_family("hr.007") == "hr"
    assert queue_family("translator.work") == "translator.work"
    assert queue_family("") == "(default)"


async def test_settling_a_delivery_counts_it_once_per_queue_family():
    async def ack():
        pass
    span = SimpleNamespace(end=lambda: None)
    before = value("bridge_messages_acked_total", queue="dispatcher.m1")
    requeued = value("bridge_messages_requeued_total", queue="dispatcher.m1")
    delivery = Delivery(SimpleNamespace(ack=ack), "dispatcher.m1.p003", 1, None, span)
    await delivery.ack()
    await delivery.ack()
    await delivery.requeue()  # already settled: nothing
    assert value("bridge_messages_acked_total", queue="dispatcher.m1") == before + 1
    assert value("bridge_messages_requeued_total", queue="dispatcher.m1") == requeued


def plan() -> ScimOperationPlanned:
    return ScimOperationPlanned(org="https://acme.okta.com", app_id=APP, okta_user_id="00u1xxxxxxxxxxxxxxxx",
                                version=1, action=PlanAction.DEACTIVATE, unique_value="u", cause="test")


async def test_plans_are_counted_by_app_and_action_and_outcomes_by_app_and_reason():
    before = value("bridge_plans_total", app=APP, action="deactivate")
    await PlanPublisher(Sent(), SimpleNamespace(partitions=lambda pool: 8)).publish(plan(), "default")
    assert value("bridge_plans_total", app=APP, action="deactivate") == before + 1
    applied = value("bridge_outcomes_total", app=APP, reason="applied")
    audit = AuditPublisher(Sent(), "scim-dispatcher", "https://acme.okta.com")
    await audit.record(AuditStep.APPLIED, app_id=APP, okta_user_id="00u1xxxxxxxxxxxxxxxx", reason=Reason.APPLIED)
    with pytest.raises(ValidationError, match="reason code"):  # no reason: refused, not counted
        await audit.record(AuditStep.APPLIED, app_id=APP, okta_user_id="00u1xxxxxxxxxxxxxxxx")
    assert value("bridge_outcomes_total", app=APP, reason="applied") == applied + 1
    text = generate_latest(REGISTRY).decode()
    assert "00u1xxxxxxxxxxxxxxxx" not in text  # a user never becomes a label


class Sent:
    def __init__(self) -> None:
        self.messages = []

    async def publish(self, message, **kwargs):
        self.messages.append((message, kwargs))


async def test_retries_holds_and_dead_letters_are_counted_per_queue_family_and_exported_from_the_start():
    label = "dispatcher.m2"
    republisher = Republisher(Sent(), PartitionRoutes("m2"), max_attempts=3)
    for name in ("bridge_retries_total", "bridge_holds_total", "bridge_dead_letters_total"):
        assert REGISTRY.get_sample_value(name, {"queue": label}) == 0.0, name
    message = plan()
    await republisher.retry(message, 1, routing_key="m2.004")
    await republisher.hold(message, 1, routing_key="m2.004")
    await republisher.dead_letter(b"{}", "gave up", 3, "dispatcher")
    for name in ("bridge_retries_total", "bridge_holds_total", "bridge_dead_letters_total"):
        assert value(name, queue=label) == 1.0, name
    other = Republisher(Sent(), QueueRoutes("translator.work"), max_attempts=3)
    await other.retry(message, 1)
    assert value("bridge_retries_total", queue="translator.work") >= 1.0


async def test_okta_rate_limit_remaining_and_waits_per_bucket(monkeypatch):
    async def no_sleep(_: float) -> None:
        pass
    monkeypatch.setattr(okta_client.asyncio, "sleep", no_sleep)
    waits = value("bridge_okta_rate_limit_waits_total", bucket="user")
    c = client(FakeOkta(okta(body={}, remaining=1, reset_in=30), okta(body={}, remaining=99)))
    await c.get("/api/v1/users/00u1")
    assert value("bridge_okta_rate_limit_remaining", bucket="user") == 1.0
    await c.get("/api/v1/users/00u2")  # the reserve is reached: waits for the window
    assert value("bridge_okta_rate_limit_waits_total", bucket="user") == waits + 1
    assert value("bridge_okta_rate_limit_remaining", bucket="user") == 99.0


def test_poller_ages_grow_from_the_last_poll_and_the_newest_event(monkeypatch):
    import time
    POLLER.export()
    POLLER.export()  # once only
    POLLER.last_success, POLLER.newest_event = None, None
    assert value("bridge_poller_last_success_age_seconds") != value("bridge_poller_last_success_age_seconds")  # NaN
    now = time.time()
    POLLER.polled()
    POLLER.saw_event(now - 120)
    POLLER.saw_event(now - 600)  # older: the newest stays
    monkeypatch.setattr(time, "time", lambda: now + 30)
    assert 29 <= value("bridge_poller_last_success_age_seconds") <= 31
    assert 149 <= value("bridge_poller_newest_event_age_seconds") <= 151


async def test_a_dispatcher_is_ready_owning_partitions_or_waiting_and_not_once_its_owner_loop_stopped():
    from okta_bridge.partitions import PartitionOwner
    from scim_dispatcher.main import _partitions_check

    clock = [100.0]
    owner = PartitionOwner(store=None, pool="default", me="a", holder=None, ttl_s=45, margin_s=10,
                           monotonic=lambda: clock[0])
    loop_task = asyncio.get_running_loop().create_future()  # stands for the owner's run() task
    check = _partitions_check([owner], [loop_task])
    assert check() == (True, "waiting for partitions")  # a standby replica (more replicas than partitions)
    owner.held.update({0: 130.0, 1: 130.0, 2: 90.0})  # partition 2 is past its local deadline: not consumed
    owner._draining.add(1)  # being handed over: not counted
    assert owner.owned() == 1 and check() == (True, "owning 1 partition(s)")
    loop_task.set_result(None)
    assert check() == (False, "partition owner stopped")
