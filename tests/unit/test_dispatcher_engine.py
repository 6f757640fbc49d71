"""The dispatcher's engine (``scim_dispatcher.engine.Engine``), driven for real over in-memory fakes: no broker, no
database, no network. What it proves:

* a message that is not a plan is dead-lettered alone (``invalid_message``) and acked; the plans beside it are applied;
* a bulk link write where one document fails: the others count as applied, the failed one goes to a retry tier and is
  acked only once that retry is published;
* plans of one user key arriving together coalesce: only the newest is applied, the others are settled as superseded,
  each with its own audit record, and every delivery is acked;
* one key's plans never run concurrently and keep their order across runs; different keys run concurrently, at most
  ``max_in_flight`` SCIM requests at once;
* past the partition's local deadline no SCIM request starts (``OwnershipLost``): the message goes back to its
  partition, re-published as it was (same attempt, outside the queue's delivery count) and only then acked, and
  nothing is audited for it; if the broker refuses that publish, the delivery is requeued instead;
* deliveries are acked only after the bulk link write (and the batch's audit message) completed;
* ``lost(partition)`` returns what waits of that partition; a delivery of a partition not owned is returned;
* a drain (hand-over) waits only for the requests in flight: keys waiting at the gate go back to their partition.

The deliveries are real :class:`~okta_bridge.bus.Delivery` objects over a fake broker message; the audit publisher is
the real :class:`~okta_bridge.audit.AuditPublisher` over a fake broker publisher; circuits are the real ones.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

from okta_bridge.audit import AuditPublisher
from okta_bridge.bus import Delivery
from okta_bridge.contracts import (AuditBatch, AuditRecorded, AuditStep, MappedAttribute, PlanAction, Reason,
                                   ScimOperationPlanned)
from okta_bridge.stores.links import Link, LinkWrite, LinkWriteError
from okta_bridge.topology import partition_key
from scim_dispatcher.circuit import Circuits
from scim_dispatcher.consume import DispatcherPorts
from scim_dispatcher.engine import Engine, EngineConfig, OwnershipLost
from scim_dispatcher.handlers import Outcome
from scim_dispatcher.adapters.scim_errors import ScimPermanentError
from tests.unit.fakes import ORG, FakeLinks, app_connector

JIRA = "0oa1jiraxxxxxxxxxxxx"
POOL = "default"


def plan(user: str = "00u1xxxxxxxxxxxxxxxx", version: int = 1) -> ScimOperationPlanned:
    return ScimOperationPlanned(org=ORG, app_id=JIRA, okta_user_id=user, version=version, action=PlanAction.UPSERT,
                                attributes=(MappedAttribute(path="userName", value=f"{user}@acme.com"),),
                                unique_value=f"{user}@acme.com", cause="test", event_uuid=f"ev-{user}-{version}")


# ------------------------------------------------------------------------------------------------------------- fakes

@dataclass
class FakeMessage:
    """The broker's message under a real ``Delivery``: records every settlement (and logs it)."""
    body: bytes
    routing_key: str
    name: str
    log: list[str]
    calls: list[str] = field(default_factory=list)
    headers: dict = field(default_factory=dict)

    async def ack(self) -> None:
        self.calls.append("ack")
        self.log.append(f"ack {self.name}")

    async def nack(self, requeue: bool = True) -> None:
        self.calls.append("requeue" if requeue else "reject")
        self.log.append(f"requeue {self.name}")


class FakePublisher:
    """What the real AuditPublisher publishes to: keeps the audit messages (one per batch)."""

    def __init__(self, log: list[str]) -> None:
        self.batches: list[AuditBatch] = []
        self.log = log

    async def publish(self, message: Any, **_: Any) -> None:
        assert isinstance(message, AuditBatch)
        self.batches.append(message)
        self.log.append("audit")


class FakeRepublisher:
    max_attempts = 15

    def __init__(self, log: list[str]) -> None:
        self.retries: list[tuple[Any, int, str]] = []
        self.holds: list[tuple[Any, int, str]] = []
        self.dead: list[tuple[Any, str, int, str]] = []
        self.backs: list[tuple[bytes, str, int]] = []
        self.held_since: list[float | None] = []
        self.log = log

    async def retry(self, message, attempt, retry_after_s=None, routing_key="") -> None:
        await asyncio.sleep(0)  # a confirmed publish takes a round trip
        self.retries.append((message, attempt, routing_key))
        self.log.append(f"retry {message.okta_user_id}")

    async def hold(self, message, attempt, routing_key="", held_since=None) -> None:
        self.holds.append((message, attempt, routing_key))
        self.held_since.append(held_since)
        self.log.append("hold")

    async def dead_letter(self, message, reason, attempt, source) -> None:
        self.dead.append((message, reason, attempt, source))
        self.log.append("dead_letter")

    async def back(self, body, routing_key, attempt, context=None, held_since=None) -> None:
        await asyncio.sleep(0)
        if self.refuse_back:
            raise ConnectionError("the broker is away")
        self.backs.append((body, routing_key, attempt))
        self.log.append("back")

    refuse_back = False


class Links(FakeLinks):
    """The link store: one read per start, one bulk write per completion; writes of ``failing`` users fail (after the
    others landed), as ``MongoLinks.save_many`` reports it."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log
        self.reads: list[list[tuple[str, str]]] = []
        self.bulks: list[list[LinkWrite]] = []
        self.failing: set[str] = set()

    async def get_keys(self, keys):
        self.reads.append(list(keys))
        return await super().get_keys(keys)

    async def save_many(self, writes):
        self.bulks.append(list(writes))
        await asyncio.sleep(0.01)  # a database round trip: whatever does not wait for it would run now
        failed = [i for i, w in enumerate(writes) if w.user_id in self.failing]
        stored = iter(await super().save_many([w for w in writes if w.user_id not in self.failing]))
        landed = [False if i in failed else next(stored) for i in range(len(writes))]
        self.log.append("links saved")
        if failed:
            raise LinkWriteError(failed, landed)
        return landed


class FakeUsers:
    """The users port: each apply makes one SCIM request through the engine's gate, as the SCIM client does. A user
    in ``held`` waits (inside the gate) until its event is set; ``"*"`` holds everyone."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.calls: list[tuple[str, int, Link | None, int]] = []  # (user, version, link read, fence)
        self.requests: list[tuple[str, int]] = []  # requests that passed the gate
        self.stopped: list[tuple[str, int]] = []  # applies the gate stopped with OwnershipLost
        self.held: dict[str, asyncio.Event] = {}
        self.in_flight = self.peak = 0
        self.running: Counter[str] = Counter()
        self.peak_per_user: Counter[str] = Counter()
        self.errors: dict[str, Exception] = {}  # user -> what the target answers (raised after the request)

    async def apply(self, p: ScimOperationPlanned, link: Link | None, fence: int = 0) -> Outcome:
        self.calls.append((p.okta_user_id, p.version, link, fence))
        self.running[p.okta_user_id] += 1
        self.peak_per_user[p.okta_user_id] = max(self.peak_per_user[p.okta_user_id], self.running[p.okta_user_id])
        try:
            async with self.engine.gate(p.app_id):
                self.requests.append((p.okta_user_id, p.version))
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                try:
                    hold = self.held.get(p.okta_user_id) or self.held.get("*")
                    await (hold.wait() if hold is not None else asyncio.sleep(0))
                finally:
                    self.in_flight -= 1
        except OwnershipLost:
            self.stopped.append((p.okta_user_id, p.version))
            raise
        finally:
            self.running[p.okta_user_id] -= 1
        if p.okta_user_id in self.errors:
            raise self.errors[p.okta_user_id]
        target = f"t-{p.okta_user_id}"
        return Outcome(AuditStep.APPLIED, Reason.APPLIED, target, "PUT", "/Users/{id}", 200, "updated", 1.0,
                       link=LinkWrite(p.app_id, p.okta_user_id, p.version, target, True, fence))


class FakePermits:
    """The app's permits: ``on_take`` runs once a permit is taken (say, the clock moves on meanwhile)."""

    def __init__(self) -> None:
        self.taken: list[str] = []
        self.on_take = None

    @asynccontextmanager
    async def slot(self, app_id: str, local, check=None):
        if check is not None:
            check()
        async with local.hold():  # the replica's in-flight limit
            self.taken.append(app_id)
            if self.on_take is not None:
                self.on_take()
            yield


class FakeConsumer:
    def __init__(self) -> None:
        self.consumed: list[str] = []
        self.cancelled: list[str] = []

    async def consume(self, queue: str) -> None:
        self.consumed.append(queue)

    async def cancel(self, queue: str) -> None:
        self.cancelled.append(queue)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    engine: Engine
    users: FakeUsers
    links: Links
    published: FakePublisher
    republisher: FakeRepublisher
    permits: FakePermits
    consumer: FakeConsumer
    clock: Clock
    log: list[str]

    def deliver(self, message: ScimOperationPlanned | bytes, partition: int = 0, attempt: int = 1) -> Delivery:
        body = message if isinstance(message, bytes) else message.model_dump_json().encode()
        name = "invalid" if isinstance(message, bytes) else f"{message.okta_user_id}v{message.version}"
        raw = FakeMessage(body, partition_key(POOL, partition), name, self.log)
        delivery = Delivery(raw, f"dispatcher.{POOL}.p{partition:03d}", attempt, otel_context.Context(),
                            trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT))
        self.engine.on_delivery(delivery, partition)
        return delivery

    def records(self) -> list[AuditRecorded]:
        return [r for batch in self.published.batches for r in batch.records]


def calls(delivery: Delivery) -> list[str]:
    return delivery.raw.calls


async def until(condition, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


async def settled(*deliveries: Delivery) -> None:
    await until(lambda: all(d.settled for d in deliveries))


@pytest.fixture
async def world():
    """``await world(**EngineConfig fields)``: an engine owning partition 0 (token 7, deadline 60 s ahead)."""
    made: list[World] = []

    async def build(**cfg: Any) -> World:
        log: list[str] = []
        users, links, published = FakeUsers(), Links(log), FakePublisher(log)
        audit = AuditPublisher(published, "scim-dispatcher", ORG)
        ports = DispatcherPorts(apps={JIRA: app_connector(JIRA)}, users=users, groups=None, group_state=None,
                                circuits=Circuits(), audit=audit, outbox=None)
        republisher, permits, clock, consumer = FakeRepublisher(log), FakePermits(), Clock(), FakeConsumer()
        engine = Engine(ports, republisher, audit, links, EngineConfig(POOL, **{"batch_wait_s": 0.02, **cfg}),
                        permits, monotonic=clock)
        engine.consumer, engine.queue_of = consumer, (lambda p: f"dispatcher.{POOL}.p{p:03d}")
        users.engine = engine
        await engine.gained(0, 7, clock.now + 60)
        w = World(engine, users, links, published, republisher, permits, consumer, clock, log)
        made.append(w)
        return w

    yield build
    for w in made:  # nothing left running into the next test
        for event in w.users.held.values():
            event.set()
        await asyncio.wait_for(w.engine.close(), 5)


# ------------------------------------------------------------------------------------------------------------- tests

async def test_a_targets_huge_error_naming_the_person_is_one_bounded_line_without_their_values(world):
    """Issue 9 item 15: a 64 KB, many-line error description that echoes the person's values reaches the dead
    letter and the audit trail as one line of at most 300 characters, the plan's values masked."""
    person = plan("00u7xxxxxxxxxxxxxxxx").model_copy(update={
        "unique_value": "annabel.lee@acme.com",
        "attributes": (MappedAttribute(path="userName", value="annabel.lee@acme.com"),
                       MappedAttribute(path="name.givenName", value="Annabel"),
                       MappedAttribute(path="name.familyName", value="Lee-Nakamura"),
                       MappedAttribute(path="phoneNumbers", value=[{"value": "+41 79 555 12 34", "type": "work"}]))})
    echo = "Annabel Lee-Nakamura (annabel.lee) with phone +41 79 555 12 34 is refused:\n  attribute invalid\r\n"
    w = await world()
    w.users.errors["00u7xxxxxxxxxxxxxxxx"] = ScimPermanentError("POST", "/Users", 400, echo * 800, version="2.0")
    assert len(echo * 800) > 64_000
    await settled(w.deliver(person.model_dump_json().encode()))
    ((_, why, _, _),) = w.republisher.dead
    texts = [why] + [r.detail for r in w.records() if r.detail]
    for text in texts:
        assert len(text) <= 300 and "\n" not in text and "\r" not in text
        for value in ("Annabel", "annabel", "Lee-Nakamura", "+41 79 555 12 34"):
            assert value not in text, (value, text)
    assert "POST /Users -> 400" in why  # what failed is still told


async def test_a_forged_plan_whose_user_id_is_a_path_is_dead_lettered_as_invalid_without_its_values(world):
    """Issue 9 item 13: an id that is not Okta's 20-character form never reaches a URL; the reason names the field,
    never the value or the person."""
    forged = plan("00u1xxxxxxxxxxxxxxxx").model_dump(mode="json") | {"okta_user_id": "../../../users/00u2xxxxxxxxxxxxxxxx"}
    w = await world()
    bad = w.deliver(json.dumps(forged).encode())
    await settled(bad)
    ((_, why, _, _),) = w.republisher.dead
    assert "okta_user_id: not an Okta id" in why and why.startswith("invalid plan")
    assert "../" not in why and forged["unique_value"] not in why
    assert w.users.requests == []  # nothing applied



@pytest.mark.parametrize("body", [b"not json at all", b'{"app_id": "0oa1jiraxxxxxxxxxxxx", "okta_user_id": "00u9xxxxxxxxxxxxxxxx"}'])
async def test_a_message_that_is_not_a_plan_is_dead_lettered_alone_and_the_others_applied(world, body):
    w = await world()
    good1, bad, good2 = w.deliver(plan("00u1xxxxxxxxxxxxxxxx")), w.deliver(body), w.deliver(plan("00u2xxxxxxxxxxxxxxxx"))
    await settled(good1, bad, good2)

    ((dead_body, why, attempt, source),) = w.republisher.dead
    assert (dead_body, attempt, source) == (body, 1, "dispatcher") and why.startswith("invalid plan: not a plan message")
    assert w.republisher.retries == [] and w.republisher.holds == []
    assert [(r.step, r.reason) for r in w.records() if r.okta_user_id is None] == \
        [(AuditStep.DEAD_LETTERED, Reason.INVALID_MESSAGE)]
    assert sorted(u for u, *_ in w.users.calls) == ["00u1xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx"]
    assert set(w.links.links) == {(JIRA, "00u1xxxxxxxxxxxxxxxx"), (JIRA, "00u2xxxxxxxxxxxxxxxx")}
    assert calls(good1) == calls(bad) == calls(good2) == ["ack"]


async def test_a_link_write_that_fails_alone_is_retried_alone_the_others_count_as_applied(world):
    w = await world(batch_wait_s=0.2)  # the three complete in one batch
    w.links.failing = {"00u2xxxxxxxxxxxxxxxx"}
    d1, d2, d3 = w.deliver(plan("00u1xxxxxxxxxxxxxxxx")), w.deliver(plan("00u2xxxxxxxxxxxxxxxx")), w.deliver(plan("00u3xxxxxxxxxxxxxxxx"))
    await settled(d1, d2, d3)

    assert len(w.links.bulks) == 1 and len(w.links.bulks[0]) == 3  # one bulk write for the batch
    assert set(w.links.links) == {(JIRA, "00u1xxxxxxxxxxxxxxxx"), (JIRA, "00u3xxxxxxxxxxxxxxxx")}
    assert [(m.okta_user_id, attempt, key) for m, attempt, key in w.republisher.retries] == \
        [("00u2xxxxxxxxxxxxxxxx", 1, partition_key(POOL, 0))]
    steps = {(r.okta_user_id, r.step, r.reason) for r in w.records()}
    assert steps == {("00u1xxxxxxxxxxxxxxxx", AuditStep.APPLIED, Reason.APPLIED), ("00u3xxxxxxxxxxxxxxxx", AuditStep.APPLIED, Reason.APPLIED),
                     ("00u2xxxxxxxxxxxxxxxx", AuditStep.RETRIED, Reason.INTERNAL)}
    assert calls(d1) == calls(d2) == calls(d3) == ["ack"]
    assert w.log.index("retry 00u2xxxxxxxxxxxxxxxx") < w.log.index("ack 00u2xxxxxxxxxxxxxxxxv1")


async def test_plans_of_one_user_arriving_together_apply_only_the_newest_the_others_are_superseded(world):
    w = await world()
    ds = [w.deliver(plan("00u1xxxxxxxxxxxxxxxx", v)) for v in (1, 3, 2)]
    await settled(*ds)

    assert [(u, v) for u, v, *_ in w.users.calls] == [("00u1xxxxxxxxxxxxxxxx", 3)]
    assert len(w.links.reads) == 1
    assert w.links.links[(JIRA, "00u1xxxxxxxxxxxxxxxx")].applied_version == 3
    assert sorted((r.plan_version, r.step, r.reason) for r in w.records()) == [
        (1, AuditStep.SKIPPED_STALE, Reason.SUPERSEDED),
        (2, AuditStep.SKIPPED_STALE, Reason.SUPERSEDED),
        (3, AuditStep.APPLIED, Reason.APPLIED)]
    assert sorted(r.event_uuid for r in w.records()) == ["ev-00u1xxxxxxxxxxxxxxxx-1", "ev-00u1xxxxxxxxxxxxxxxx-2", "ev-00u1xxxxxxxxxxxxxxxx-3"]  # one per message
    assert len(w.published.batches) == 1  # one audit message for the batch
    assert all(calls(d) == ["ack"] for d in ds)


async def test_plans_of_one_key_run_one_at_a_time_and_in_order_across_runs(world):
    w = await world()
    w.users.held["00u1xxxxxxxxxxxxxxxx"] = release = asyncio.Event()
    first = w.deliver(plan("00u1xxxxxxxxxxxxxxxx", 1))
    await until(lambda: len(w.users.requests) == 1)
    second = w.deliver(plan("00u1xxxxxxxxxxxxxxxx", 2))  # arrives while the key runs
    await asyncio.sleep(0.1)
    assert len(w.users.calls) == 1 and not second.settled  # waits for the running one

    release.set()
    await settled(first, second)
    assert [v for _, v, *_ in w.users.calls] == [1, 2]
    assert w.users.peak_per_user["00u1xxxxxxxxxxxxxxxx"] == 1
    assert w.users.calls[1][2] == Link("t-00u1xxxxxxxxxxxxxxxx", 1, True)  # the second run read the link the first one stored
    assert w.users.calls[1][3] == 7  # fenced by the partition's token
    assert calls(first) == calls(second) == ["ack"]
    assert w.links.links[(JIRA, "00u1xxxxxxxxxxxxxxxx")].applied_version == 2


@pytest.mark.parametrize("max_in_flight", [2, 8])
async def test_different_keys_run_concurrently_up_to_max_in_flight(world, max_in_flight):
    w = await world(max_in_flight=max_in_flight)
    w.users.held["*"] = release = asyncio.Event()
    ds = [w.deliver(plan(f"00u{n:x<17}")) for n in range(5)]
    expected = min(5, max_in_flight)
    await until(lambda: w.users.in_flight == expected)
    await asyncio.sleep(0.05)
    assert len(w.users.calls) == 5  # every key started
    assert w.users.in_flight == w.users.peak == expected

    release.set()
    await settled(*ds)
    assert w.users.peak == expected
    assert w.permits.taken == [JIRA] * 5  # every request took the app's permit
    assert all(calls(d) == ["ack"] for d in ds)


async def test_past_the_partition_deadline_no_request_starts_and_the_message_goes_back_to_its_partition(world):
    w = await world()
    w.clock.now = w.engine.owned[0].deadline + 0.001
    d = w.deliver(plan("00u1xxxxxxxxxxxxxxxx"), attempt=3)
    await settled(d)

    assert w.users.stopped == [("00u1xxxxxxxxxxxxxxxx", 1)]
    assert w.users.requests == [] and w.permits.taken == []  # stopped at the gate, before the app's permit
    # re-published as it was, to its own partition, same attempt; acked only after that publish
    assert w.republisher.backs == [(d.body, partition_key(POOL, 0), 3)]
    assert calls(d) == ["ack"] and w.log.index("back") < w.log.index("ack 00u1xxxxxxxxxxxxxxxxv1")
    assert w.records() == [] and w.published.batches == []
    assert w.links.bulks == [] and w.links.links == {}
    assert (w.republisher.retries, w.republisher.holds, w.republisher.dead) == ([], [], [])


async def test_a_deadline_that_passes_while_waiting_for_a_permit_stops_the_request(world):
    w = await world()
    w.permits.on_take = lambda: setattr(w.clock, "now", w.engine.owned[0].deadline)
    d = w.deliver(plan("00u1xxxxxxxxxxxxxxxx"))
    await settled(d)

    assert w.users.stopped == [("00u1xxxxxxxxxxxxxxxx", 1)]
    assert w.permits.taken == [JIRA] and w.users.requests == []
    assert calls(d) == ["ack"] and len(w.republisher.backs) == 1 and w.records() == []


async def test_a_plan_cut_off_is_requeued_when_the_broker_refuses_to_take_it_back(world):
    w = await world()
    w.republisher.refuse_back = True
    w.clock.now = w.engine.owned[0].deadline + 0.001
    d = w.deliver(plan("00u1xxxxxxxxxxxxxxxx"))
    await settled(d)

    assert calls(d) == ["requeue"] and w.republisher.backs == [] and w.records() == []


async def test_acks_come_only_after_the_bulk_link_write_and_the_audit_message(world):
    w = await world()
    ds = [w.deliver(plan(f"00u{n:x<17}")) for n in range(3)]
    await settled(*ds)

    acks = [i for i, e in enumerate(w.log) if e.startswith("ack ")]
    assert len(acks) == 3
    assert w.log.index("links saved") < w.log.index("audit") < min(acks)


async def test_lost_returns_the_waiting_deliveries_of_that_partition(world):
    w = await world(batch_wait_s=0.3)  # long enough for lost() to come before the keys start
    await w.engine.gained(1, 8, w.clock.now + 60)
    waiting = [w.deliver(plan("00u1xxxxxxxxxxxxxxxx"), 0), w.deliver(plan("00u2xxxxxxxxxxxxxxxx"), 0)]
    other = w.deliver(plan("00u3xxxxxxxxxxxxxxxx"), 1)

    await w.engine.lost(0)
    assert 0 not in w.engine.owned  # at once; the consumer and the waiting deliveries follow in the background
    for _ in range(50):
        if all(calls(d) for d in waiting):
            break
        await asyncio.sleep(0.01)
    assert [calls(d) for d in waiting] == [["ack"], ["ack"]]
    assert [(b, k) for b, k, _ in w.republisher.backs] == [(d.body, partition_key(POOL, 0)) for d in waiting]
    assert 0 not in w.engine.owned and "dispatcher.default.p000" in w.consumer.cancelled

    await settled(other)  # the other partition goes on
    assert calls(other) == ["ack"]
    assert [u for u, *_ in w.users.calls] == ["00u3xxxxxxxxxxxxxxxx"]


async def test_after_lost_a_running_key_stops_and_what_waited_behind_it_goes_back_unapplied(world):
    w = await world()
    w.users.held["00u1xxxxxxxxxxxxxxxx"] = release = asyncio.Event()
    running = w.deliver(plan("00u1xxxxxxxxxxxxxxxx", 1))
    await until(lambda: len(w.users.requests) == 1)
    behind = w.deliver(plan("00u1xxxxxxxxxxxxxxxx", 2))

    await w.engine.lost(0)
    release.set()
    await settled(running, behind)
    assert calls(running) == calls(behind) == ["ack"]
    assert [b for b, *_ in w.republisher.backs] == [running.body, behind.body]  # in their order
    assert w.users.requests == [("00u1xxxxxxxxxxxxxxxx", 1)]  # the plan behind never reached the target
    assert w.users.stopped == [("00u1xxxxxxxxxxxxxxxx", 2)]  # its run was stopped at the gate
    assert w.links.links == {} and w.records() == []  # the new owner applies both again


async def test_a_delivery_of_a_partition_not_owned_goes_back_to_that_partition(world):
    w = await world()
    d = w.deliver(plan("00u1xxxxxxxxxxxxxxxx"), partition=5)
    await settled(d)

    assert calls(d) == ["ack"] and w.republisher.backs == [(d.body, partition_key(POOL, 5), 1)]
    assert w.users.calls == [] and w.records() == []


async def test_a_drain_sends_back_the_keys_waiting_at_the_gate_and_waits_only_for_the_requests_in_flight(world):
    """A partition handed over to a replica that joined: a key waiting for a slot (or a permit) goes back to its
    partition for the new owner instead of holding up the hand-over behind the partition's backlog."""
    w = await world(max_in_flight=1)
    w.users.held["00u1xxxxxxxxxxxxxxxx"] = release = asyncio.Event()
    running = w.deliver(plan("00u1xxxxxxxxxxxxxxxx"))
    await until(lambda: len(w.users.requests) == 1)
    waiting = [w.deliver(plan("00u2xxxxxxxxxxxxxxxx")), w.deliver(plan("00u3xxxxxxxxxxxxxxxx"))]
    await until(lambda: len(w.users.calls) == 3)  # both wait for the one slot

    drain = asyncio.create_task(w.engine.drain(0))
    await asyncio.sleep(0.05)
    assert not drain.done()  # the request in flight runs to its end
    release.set()
    await asyncio.wait_for(drain, 3)
    await settled(running, *waiting)
    assert [calls(d) for d in (running, *waiting)] == [["ack"]] * 3
    assert w.users.requests == [("00u1xxxxxxxxxxxxxxxx", 1)] and sorted(w.users.stopped) == [("00u2xxxxxxxxxxxxxxxx", 1), ("00u3xxxxxxxxxxxxxxxx", 1)]
    assert sorted(b for b, *_ in w.republisher.backs) == sorted(d.body for d in waiting)
    assert [r.okta_user_id for r in w.records()] == ["00u1xxxxxxxxxxxxxxxx"]  # the returned ones are audited by the next owner
    assert 0 not in w.engine.owned and "dispatcher.default.p000" in w.consumer.cancelled
