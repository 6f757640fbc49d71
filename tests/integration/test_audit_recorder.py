"""The audit-recorder as a real process (``python -m audit_recorder``) against the real broker and database:
batched writes, the ``GET /audit`` filters and paging, the retention TTL index, and the contract as the only schema."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aio_pika
import httpx
import pytest

from okta_bridge.audit import AuditPublisher
from okta_bridge.bus import Publisher
from okta_bridge.contracts import AuditRecorded, AuditStep, Reason
from okta_bridge.mongo import connect
from okta_bridge.runtime import make_broker
from okta_bridge.topology import AUDIT_EXCHANGE

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
ORG = "https://acme.okta.com"
CONTRACT_FIELDS = set(AuditRecorded.model_fields)
GRACEFUL = (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown
TOKEN = "integration-reader-token-0001"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """One ``python -m audit_recorder`` process; its output goes to a log file shown when a test fails."""

    def __init__(self, tmp_path: Path, rabbit_url: str, mongo_db: str) -> None:
        self.tmp_path, self.rabbit_url, self.mongo_db = tmp_path, rabbit_url, mongo_db
        self.port, self.health_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.health_url = f"http://127.0.0.1:{self.health_port}"
        self.proc: subprocess.Popen | None = None
        self.log = tmp_path / "audit_recorder.log"

    def start(self, retention_days: int = 90, **env: str) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        paths = [str(ROOT / "shared"), str(ROOT / "services"), os.environ.get("PYTHONPATH", "")]
        full_env = {
            **os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "PYTHONUNBUFFERED": "1",
            "RABBITMQ_URL": self.rabbit_url, "MONGODB_URL": MONGODB_URL, "MONGODB_DB": self.mongo_db,
            "AUDIT_PORT": str(self.port), "AUDIT_RETENTION_DAYS": str(retention_days),
            "AUDIT_HEALTH_PORT": str(self.health_port), "API_TOKENS": f"tests:reader:{TOKEN}",
            "OTEL_TRACES_EXPORTER": "none", **env,
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "audit_recorder"], env=full_env, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"audit_recorder exited with {self.proc.returncode}:\n{self.output()}"
            try:
                if httpx.get(f"{self.health_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"audit_recorder did not become healthy:\n{self.output()}")

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc and self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"audit_recorder did not stop on SIGTERM:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-8000:] if self.log.exists() else ""


@pytest.fixture
def recorder(tmp_path, rabbit_url, mongo_db):
    r = Recorder(tmp_path, rabbit_url, mongo_db)
    yield r
    try:
        r.stop()
    finally:
        print(r.output())


@pytest.fixture
async def db(mongo_db):
    client, database = connect(MONGODB_URL, mongo_db)
    yield database
    await client.close()


@asynccontextmanager
async def publisher(rabbit_url: str):
    broker = make_broker(rabbit_url, 16)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.stop()


async def eventually(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s (last: {last!r})")


async def get_audit(recorder: Recorder, **params) -> dict:
    async with httpx.AsyncClient(base_url=recorder.url, timeout=10, headers=AUTH) as client:
        response = await client.get("/audit", params={k: v for k, v in params.items() if v is not None})
        assert response.status_code == 200, response.text
        return response.json()


async def healthz(recorder: Recorder) -> dict:
    async with httpx.AsyncClient(base_url=recorder.health_url, timeout=10) as client:
        response = await client.get("/healthz")
        assert response.status_code == 200, response.text
        return response.json()


async def stored(db) -> int:
    return await db.audit.count_documents({})


def record(i: int, at: datetime, **fields) -> AuditRecorded:
    return AuditRecorded(**{"at": at, "service": "scim-dispatcher", "step": AuditStep.APPLIED, "org": ORG,
                            "event_uuid": f"ev-{i}", "plan_version": i, "reason": Reason.APPLIED, **fields})


async def ttl_seconds(db) -> int | None:
    indexes = await (await db.audit.list_indexes()).to_list()
    found = [ix for ix in indexes if ix.get("name") == "audit_ttl"]
    assert len(found) <= 1
    return found[0]["expireAfterSeconds"] if found else None


async def test_records_are_written_in_batches(recorder, rabbit_url, db):
    recorder.start()
    assert (await healthz(recorder))["batches_written"] == 0
    now = datetime.now(UTC)
    async with publisher(rabbit_url) as broker:
        for i in range(60):
            await broker.publish(record(i, now + timedelta(milliseconds=i)), exchange=AUDIT_EXCHANGE, persist=True)
        bus = Publisher(await broker.connect())
        await bus.start()
        audit = AuditPublisher(bus, "translator", ORG)
        async with audit.batch():  # one message of three records, as the services send them
            for user in ("00uBxxxxxxxxxxxxxxxx", "00uCxxxxxxxxxxxxxxxx", "00uDxxxxxxxxxxxxxxxx"):
                await audit.record(AuditStep.PLANNED, reason=Reason.PLANNED, okta_user_id=user, app_id="0oaBxxxxxxxxxxxxxxxx")

    await eventually(lambda: _has(db, 63), what="63 records stored")
    batches = (await healthz(recorder))["batches_written"]
    assert 1 <= batches < 63 // 4, f"{batches} insert batches for 63 records"
    planned = (await get_audit(recorder, status="planned"))["items"]
    assert sorted((r["service"], r["okta_user_id"], r["org"]) for r in planned) == [
        ("translator", u, ORG) for u in ("00uBxxxxxxxxxxxxxxxx", "00uCxxxxxxxxxxxxxxxx", "00uDxxxxxxxxxxxxxxxx")]


async def test_a_full_batch_is_written_without_waiting_for_the_delay(recorder, rabbit_url, db):
    # a delay far longer than the test: full batches can only be stored if they do not wait for it
    recorder.start(AUDIT_BATCH_SIZE="10", AUDIT_BATCH_DELAY_S="3600")
    now = datetime.now(UTC)
    async with publisher(rabbit_url) as broker:
        for i in range(30):
            await broker.publish(record(i, now + timedelta(milliseconds=i)), exchange=AUDIT_EXCHANGE, persist=True)
        await eventually(lambda: _has(db, 30), timeout=60, what="30 records stored in full batches")
        assert (await healthz(recorder))["batches_written"] == 3
        # a partial batch waits for the delay
        for i in range(30, 33):
            await broker.publish(record(i, now + timedelta(milliseconds=i)), exchange=AUDIT_EXCHANGE, persist=True)
        await asyncio.sleep(2)
        assert await stored(db) == 30


async def test_a_partial_batch_is_written_once_the_delay_has_passed(recorder, rabbit_url, db):
    recorder.start(AUDIT_BATCH_SIZE="10", AUDIT_BATCH_DELAY_S="2")
    now = datetime.now(UTC)
    async with publisher(rabbit_url) as broker:
        for i in range(3):
            await broker.publish(record(i, now + timedelta(milliseconds=i)), exchange=AUDIT_EXCHANGE, persist=True)
        await eventually(lambda: _has(db, 3), timeout=60, what="the partial batch stored")
    assert (await healthz(recorder))["batches_written"] == 1


async def _has(db, n: int) -> bool:
    return await stored(db) >= n


async def test_get_audit_filters_pages_and_orders_newest_first(recorder, rabbit_url, db):
    recorder.start()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    plan = [  # i, minutes after base, user, app, step
        (0, 0, "00uAxxxxxxxxxxxxxxxx", "0oa1xxxxxxxxxxxxxxxx", AuditStep.RECEIVED),
        (1, 1, "00uAxxxxxxxxxxxxxxxx", "0oa1xxxxxxxxxxxxxxxx", AuditStep.PLANNED),
        (2, 2, "00uAxxxxxxxxxxxxxxxx", "0oa1xxxxxxxxxxxxxxxx", AuditStep.APPLIED),
        (3, 3, "00uBxxxxxxxxxxxxxxxx", "0oa1xxxxxxxxxxxxxxxx", AuditStep.APPLIED),
        (4, 4, "00uAxxxxxxxxxxxxxxxx", "0oa2xxxxxxxxxxxxxxxx", AuditStep.RETRIED),
        (5, 5, "00uAxxxxxxxxxxxxxxxx", "0oa2xxxxxxxxxxxxxxxx", AuditStep.APPLIED),
        (6, 6, "00uBxxxxxxxxxxxxxxxx", "0oa2xxxxxxxxxxxxxxxx", AuditStep.DEAD_LETTERED),
        (7, 7, "00uAxxxxxxxxxxxxxxxx", "0oa1xxxxxxxxxxxxxxxx", AuditStep.APPLIED),
    ]
    async with publisher(rabbit_url) as broker:
        for i, minutes, user, app, step in plan:
            await broker.publish(record(i, base + timedelta(minutes=minutes), okta_user_id=user, app_id=app,
                                        step=step, trace_id=f"{i:032x}"),
                                 exchange=AUDIT_EXCHANGE, persist=True)
    await eventually(lambda: _has(db, len(plan)), what="records stored")

    def versions(page: dict) -> list[int]:
        return [item["plan_version"] for item in page["items"]]

    everything = await get_audit(recorder)
    assert versions(everything) == [7, 6, 5, 4, 3, 2, 1, 0]  # newest first
    assert everything["next"] is None
    assert all(isinstance(item["id"], str) and "_id" not in item for item in everything["items"])

    assert versions(await get_audit(recorder, user="00uAxxxxxxxxxxxxxxxx")) == [7, 5, 4, 2, 1, 0]
    assert versions(await get_audit(recorder, app="0oa2xxxxxxxxxxxxxxxx")) == [6, 5, 4]
    assert versions(await get_audit(recorder, status="applied")) == [7, 5, 3, 2]
    assert versions(await get_audit(recorder, user="00uAxxxxxxxxxxxxxxxx", app="0oa1xxxxxxxxxxxxxxxx", status="applied")) == [7, 2]
    assert versions(await get_audit(recorder, event="ev-3")) == [3]
    assert versions(await get_audit(recorder, trace=f"{6:032x}")) == [6]
    assert versions(await get_audit(recorder, user="00uNOBODYxxxxxxxxxxx")) == []

    since, until = (base + timedelta(minutes=2)).isoformat(), (base + timedelta(minutes=5)).isoformat()
    assert versions(await get_audit(recorder, since=since, until=until)) == [4, 3, 2]  # [since, until)
    assert versions(await get_audit(recorder, since=since)) == [7, 6, 5, 4, 3, 2]
    assert versions(await get_audit(recorder, until=until, user="00uAxxxxxxxxxxxxxxxx")) == [4, 2, 1, 0]
    # an offset other than UTC is the same instant
    cet = (base + timedelta(minutes=6)).astimezone(timezone(timedelta(hours=2)))
    assert versions(await get_audit(recorder, since=cet.isoformat())) == [7, 6]

    # paging: follow `next` until it is None; pages are disjoint, newest first, and cover everything once
    seen, after, pages = [], None, 0
    while True:
        page = await get_audit(recorder, user="00uAxxxxxxxxxxxxxxxx", limit=4, after=after)
        seen += versions(page)
        pages += 1
        if page["next"] is None:
            break
        assert page["next"].endswith("~" + page["items"][-1]["id"])  # keyset token: (at, id) of the last item
        after = page["next"]
        assert pages < 10
    assert seen == [7, 5, 4, 2, 1, 0] and pages == 2

    async with httpx.AsyncClient(base_url=recorder.url, timeout=10) as anonymous:  # the process checks access
        assert (await anonymous.get("/audit", params={"user": "00uA"})).status_code == 401
        assert (await anonymous.get("/audit", headers={**AUTH, "Host": "evil.example"})).status_code == 400
        assert (await anonymous.get("/healthz")).status_code == 404  # on its own port only
    async with httpx.AsyncClient(base_url=recorder.url, timeout=10, headers=AUTH) as client:
        assert (await client.get("/audit", params={"after": "not-a-token"})).status_code == 400
        exploded = await client.get("/audit", params={"status": "exploded"})
        assert exploded.status_code == 400 and exploded.json()["detail"].startswith("status: ")
        assert (await client.get("/audit", params={"limit": 0})).status_code == 400


async def test_stored_and_served_records_hold_only_contract_fields(recorder, rabbit_url, db):
    recorder.start()
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # BSON dates hold milliseconds
    full = record(1, now, okta_user_id="00uFxxxxxxxxxxxxxxxx", app_id="0oaFxxxxxxxxxxxxxxxx", target_id="t-1", scim_method="PUT",
                  scim_path="/Users/t-1", scim_status=200, duration_ms=12.5, trace_id="ab" * 16,
                  event_type="user.lifecycle.deactivate", detail="ok")
    async with publisher(rabbit_url) as broker:
        # a message outside the contract (an extra field) must never be stored
        rogue = {**json.loads(full.model_dump_json()), "plan_version": 2, "password": "hunter2",
                 "event_uuid": "ev-rogue"}
        await broker.publish(json.dumps(rogue).encode(), exchange=AUDIT_EXCHANGE, persist=True,
                             content_type="application/json")
        await broker.publish(full, exchange=AUDIT_EXCHANGE, persist=True)
        # a millisecond later: records of one millisecond have no order of their own (their _id is made from content)
        await broker.publish(record(3, now + timedelta(milliseconds=1), okta_user_id="00uFxxxxxxxxxxxxxxxx"),
                             exchange=AUDIT_EXCHANGE, persist=True)

    await eventually(lambda: _has(db, 2), what="records stored")
    async for doc in db.audit.find({}):
        assert set(doc) <= CONTRACT_FIELDS | {"_id"}, doc
    items = (await get_audit(recorder, user="00uFxxxxxxxxxxxxxxxx"))["items"]
    assert [i["plan_version"] for i in items] == [3, 1]
    for item in items:
        assert set(item) <= CONTRACT_FIELDS | {"id"}, item
    served = {k: v for k, v in items[1].items() if k != "id"}
    assert AuditRecorded.model_validate(served) == full  # round trip: nothing lost, nothing added

    # the rogue message is not stored: it ends in the dead letters (broker delivery limit), not in the trail
    connection = await aio_pika.connect_robust(rabbit_url)
    async with connection:
        channel = await connection.channel()
        dead_letters = await channel.declare_queue("bridge.dead-letters", passive=True)
        deadline, dead = time.monotonic() + 60, None
        while dead is None and time.monotonic() < deadline:
            dead = await dead_letters.get(fail=False, timeout=5)
            if dead is None:
                await asyncio.sleep(0.2)
        assert dead is not None, "the message outside the contract was neither stored nor dead-lettered"
        assert json.loads(dead.body)["event_uuid"] == "ev-rogue"
        await dead.ack()
    assert await db.audit.count_documents({"event_uuid": "ev-rogue"}) == 0
    assert await db.audit.count_documents({"password": {"$exists": True}}) == 0


async def test_retention_ttl_index_follows_the_configured_days_across_restarts(recorder, rabbit_url, db):
    recorder.start(retention_days=30)
    assert await ttl_seconds(db) == 30 * 86400
    keys = {ix["name"]: ix["key"] for ix in await (await db.audit.list_indexes()).to_list()}
    assert keys["audit_ttl"] == {"at": 1}

    async with publisher(rabbit_url) as broker:
        await broker.publish(record(1, datetime.now(UTC)), exchange=AUDIT_EXCHANGE, persist=True)
    await eventually(lambda: _has(db, 1), what="record stored")
    assert recorder.stop() in GRACEFUL and "Traceback" not in recorder.output()

    recorder.start(retention_days=7)  # retention shortened: the TTL index is adjusted in place, not a failure
    assert await ttl_seconds(db) == 7 * 86400
    recorder.stop()
    recorder.start(retention_days=7)  # unchanged: a plain restart
    assert await ttl_seconds(db) == 7 * 86400
    recorder.stop()
    recorder.start(retention_days=365)
    assert await ttl_seconds(db) == 365 * 86400
    assert len([ix for ix in await (await db.audit.list_indexes()).to_list() if ix["name"] == "audit_ttl"]) == 1
    assert await stored(db) == 1  # the trail survives the restarts
    assert len((await get_audit(recorder))["items"]) == 1


async def test_invalid_retention_refuses_to_start(recorder):
    with pytest.raises(AssertionError, match="exited"):
        recorder.start(retention_days=0)


async def test_a_malformed_tokens_setting_refuses_to_start_naming_the_entry_not_the_token(recorder):
    secret = "a-bare-token-without-name-or-role"
    with pytest.raises(AssertionError, match="exited with 2"):
        recorder.start(API_TOKENS=f"tests:reader:{TOKEN},{secret}")
    assert "API_TOKENS entry 2: expected NAME:ROLE:TOKEN" in recorder.output() and secret not in recorder.output()
    assert "Traceback" not in recorder.output()


async def test_records_published_while_the_recorder_is_down_are_recorded_after_restart(recorder, rabbit_url, db):
    recorder.start()
    assert recorder.stop() in GRACEFUL and "Traceback" not in recorder.output()
    now = datetime.now(UTC)
    async with publisher(rabbit_url) as broker:  # the queue is durable: nothing is lost while it is down
        for i in range(5):
            await broker.publish(record(i, now + timedelta(milliseconds=i)), exchange=AUDIT_EXCHANGE, persist=True)
    recorder.start()
    await eventually(lambda: _has(db, 5), what="records stored after restart")
    assert [i["plan_version"] for i in (await get_audit(recorder))["items"]] == [4, 3, 2, 1, 0]
