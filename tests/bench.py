"""`make bench` (``python -m tests.bench``): the bridge end to end on the real RabbitMQ and MongoDB, measured.

Every service runs as its own process (:class:`tests.harness.devstack.DevStack`) against the Okta simulator and
the demo SCIM target (a fast local target), in a temporary RabbitMQ vhost and a temporary database, both removed
at the end. Performance is measured and printed, never asserted (the exit status is non-zero only when a
scenario could not run or did not converge).

Scenarios:

* **baselines** - the broker alone: publish -> consume through 3 hops (publisher -> q1 -> forwarder -> q2 ->
  forwarder -> q3 -> consumer; persistent messages, publisher confirms, quorum queues, each forwarder its own
  process), in bulk and paced; the database alone: sequential ``insert_one``, 16 concurrent ``insert_one`` and
  batched ``insert_many`` (pymongo ``AsyncMongoClient``).
* **bulk** (a) - ``--users`` users assigned to the app while the bridge runs, simulator plan ``generous``.
* **paced** (c) - on the same stack: profile updates of the provisioned users at ``--rate`` changes/s for
  ``--rate-seconds`` s.
* **workforce** (b) - a fresh stack on the Workforce plan at the default 50 % token share, ``--workforce-users``
  users assigned.
* **groups** (d) - Push Groups on a fresh stack (plan ``generous``): one group of 5,000 members and 50 groups of
  100 (``--group-scale`` scales the sizes), all members assigned and provisioned first through the initial full
  sync (setup, not measured). Then translator, scim-dispatcher and queue-poller are restarted with ``push_groups``
  naming every group, as an operator starts pushing; measured from that restart until the target's groups, read
  back over SCIM (``GET /Groups``, a user agent of its own, left out of the counts), have exactly Okta's members.
  Reports the time to converge, the bridge's SCIM requests by kind (request log), Okta calls by bucket, and peak
  RSS/CPU per process during the push.

Latency of a change = SCIM write time in the target's request log (the POST/PUT that carries the user, matched
by ``externalId``; for the paced scenario by the unique ``name.givenName`` value sent) minus the ``published``
time of its System Log event. Okta calls per change come from the simulator's counters before/after; peak RSS
from ``VmHWM`` of each service pid; CPU from ``/proc/<pid>/stat``.

Figures are printed as tables and written to ``.run/bench-<timestamp>.json``; logs of the run stay in
``.run/bench-<timestamp>/``.

    python -m tests.bench                       # ~3-5 minutes on 2 cores
    python -m tests.bench --users 500 --rate-seconds 10 --scenarios baselines,bulk,paced
    python -m tests.bench --env POLLER_IDLE_INTERVAL_S=1 --max-concurrency 16
    python -m tests.bench --scenarios groups --group-scale 0.1   # the group scenario alone, about a minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
import traceback
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
SERVICES = ("queue_poller", "translator", "scim_dispatcher", "audit_recorder")
HARNESS = ("okta-simulator", "demo-target")
CLK_TCK = os.sysconf("SC_CLK_TCK")
ALL_SCENARIOS = ("baselines", "bulk", "paced", "workforce", "groups")

console = Console()


# ----------------------------------------------------------------------------------------------------------- helpers

def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:  # nearest rank
        return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": ordered[-1], "n": len(ordered)}


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def new_vhost(tag: str) -> tuple[str, str]:
    vhost = f"bench-{tag}-{uuid.uuid4().hex[:8]}"
    parts = urlsplit(RABBITMQ_URL)
    ctl("add_vhost", vhost)
    ctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
    return vhost, urlunsplit((parts.scheme, parts.netloc, "/" + vhost, "", ""))


def drop_vhost(vhost: str) -> None:
    try:
        ctl("delete_vhost", vhost)
    except Exception as exc:  # noqa: BLE001 - cleanup reports, never hides the result
        console.print(f"[yellow]could not delete vhost {vhost}: {exc}[/]")


def drop_db(name: str) -> None:
    from pymongo import MongoClient

    try:
        with MongoClient(MONGODB_URL, serverSelectionTimeoutMS=5000) as client:
            client.drop_database(name)
    except Exception as exc:  # noqa: BLE001
        console.print(f"[yellow]could not drop database {name}: {exc}[/]")


def fmt(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return str(value)


def ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


def infra_pids() -> dict[str, int]:
    """The broker's and the database's server pids, read-only (for CPU and RSS; never signalled). With several
    database servers on the host, the one whose command line names MONGODB_URL's port."""
    found: dict[str, int] = {}
    databases: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "beam.smp" in cmd and "-s rabbit boot" in cmd:
            found.setdefault("rabbitmq", int(entry.name))
        elif ("secantusd" in cmd or cmd.split(" ")[0].endswith("mongod")) and "tests.bench" not in cmd:
            databases.append((int(entry.name), cmd))
    port = urlsplit(MONGODB_URL).port or 27017
    for pid, cmd in sorted(databases):
        if f"--port {port} " in cmd + " " or f"--port={port} " in cmd + " " or (port == 27017 and "--port" not in cmd):
            found["mongodb"] = pid
            break
    else:
        if databases:
            found["mongodb"] = min(databases)[0]
    return found


def read_proc(pid: int) -> tuple[int | None, int | None, int | None]:
    """(VmRSS kB, VmHWM kB, utime+stime ticks) of a live pid, or Nones."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, None, None
    fields = {line.split(":")[0]: line.split(":")[1].split()[0] for line in status.splitlines()
              if line.startswith(("VmRSS", "VmHWM"))}
    after = stat.rsplit(")", 1)[1].split()
    ticks = int(after[11]) + int(after[12])  # utime, stime (fields 14 and 15)
    return int(fields.get("VmRSS", 0)), int(fields.get("VmHWM", 0)), ticks


class ProcSampler:
    """Samples VmRSS/VmHWM/CPU ticks of named pids every ``interval`` seconds; phases are marked by name."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self.pids, self.interval = pids, interval
        self.peak_rss: dict[str, int] = {n: 0 for n in pids}
        self.hwm: dict[str, int] = {n: 0 for n in pids}
        self._task: asyncio.Task | None = None
        self._marks: dict[str, tuple[float, dict[str, int | None]]] = {}

    def _sample(self) -> dict[str, int | None]:
        ticks: dict[str, int | None] = {}
        for name, pid in self.pids.items():
            rss, hwm, t = read_proc(pid)
            if rss is not None:
                self.peak_rss[name] = max(self.peak_rss[name], rss)
                self.hwm[name] = max(self.hwm[name], hwm or 0)
            ticks[name] = t
        return ticks

    async def _loop(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._sample()

    def mark(self, name: str) -> None:
        self._marks[name] = (time.monotonic(), self._sample())

    def cpu(self, start: str, end: str) -> dict[str, float | None]:
        """Average CPU % (100 = one core) of each pid between two marks."""
        (t0, a), (t1, b) = self._marks[start], self._marks[end]
        wall = max(t1 - t0, 1e-6)
        return {n: (None if a.get(n) is None or b.get(n) is None else
                    round((b[n] - a[n]) / CLK_TCK / wall * 100, 1)) for n in self.pids}

    def memory(self) -> dict[str, dict[str, float]]:
        return {n: {"peak_rss_mb": round(self.peak_rss[n] / 1024, 1), "vmhwm_mb": round(self.hwm[n] / 1024, 1)}
                for n in self.pids}


def top_snapshot(path: Path) -> list[str]:
    try:
        out = subprocess.run(["top", "-b", "-n1", "-w", "200", "-o", "%CPU"], capture_output=True, text=True,
                             timeout=10).stdout
    except Exception as exc:  # noqa: BLE001
        return [f"top failed: {exc}"]
    path.write_text(out)
    return out.splitlines()[:22]


class QueueDepths:
    """Polls the ready depth of the pipeline's work queues (passive declares, once a second): the
    queue whose backlog grows sits in front of the slowest stage."""

    QUEUES = ("translator.work", "dispatcher.default", "audit.records")

    def __init__(self, url: str, interval: float = 1.0) -> None:
        self.url, self.interval = url, interval
        self.series: dict[str, list[tuple[float, int]]] = {q: [] for q in self.QUEUES}
        self._task: asyncio.Task | None = None

    async def _loop(self) -> None:
        connection = await aio_pika.connect(self.url)
        try:
            while True:
                channel = await connection.channel()
                for name in self.QUEUES:
                    with suppress(Exception):
                        queue = await channel.declare_queue(name, passive=True)
                        self.series[name].append((time.time(), queue.declaration_result.message_count))
                with suppress(Exception):
                    await channel.close()
                await asyncio.sleep(self.interval)
        finally:
            await connection.close()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    def peaks(self, since: float, until: float) -> dict[str, int]:
        return {q: max((n for t, n in points if since <= t <= until), default=0) for q, points in self.series.items()}


# ------------------------------------------------------------------------------------------------- broker baseline

async def _forward(url: str, src: str, dst: str, prefetch: int, ready) -> None:
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.get_queue(src)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await channel.default_exchange.publish(
            aio_pika.Message(message.body, message_id=message.message_id,
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=dst)
        await message.ack()

    await queue.consume(on_message)
    ready.set()
    await asyncio.Future()


def forwarder_main(url: str, src: str, dst: str, prefetch: int, ready) -> None:
    """One hop (consume ``src``, publish to ``dst`` with a confirm, then ack), in its own process like a service."""
    with suppress(KeyboardInterrupt):
        asyncio.run(_forward(url, src, dst, prefetch, ready))


async def rabbit_baseline(url: str, messages: int, rate: float, paced_seconds: float, prefetch: int,
                          in_flight: int, payload: int) -> dict[str, Any]:
    queues = ["bench.q1", "bench.q2", "bench.q3"]
    connection = await aio_pika.connect(url)
    ctx = mp.get_context("spawn")
    workers: list[Any] = []
    try:
        setup = await connection.channel()
        for name in queues:
            await setup.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        for src, dst in zip(queues, queues[1:]):
            ready = ctx.Event()
            proc = ctx.Process(target=forwarder_main, args=(url, src, dst, prefetch, ready), daemon=True)
            proc.start()
            workers.append(proc)
            if not await asyncio.to_thread(ready.wait, 60):
                raise RuntimeError("a baseline forwarder did not start")

        received: dict[int, float] = {}
        sent: dict[int, float] = {}
        done = asyncio.Event()
        expected = {"n": 0}
        sink = await connection.channel()
        await sink.set_qos(prefetch_count=prefetch)

        async def on_final(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received[int(message.message_id)] = time.time()
            await message.ack()
            if len(received) >= expected["n"]:
                done.set()

        await (await sink.get_queue(queues[-1])).consume(on_final)
        pub = await connection.channel(publisher_confirms=True)
        body = b"x" * payload
        slots = asyncio.Semaphore(in_flight)

        async def publish(i: int) -> None:
            async with slots:
                sent[i] = time.time()
                await pub.default_exchange.publish(
                    aio_pika.Message(body, message_id=str(i), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queues[0])

        async def run(ids: list[int], pace: float | None) -> dict[str, Any]:
            expected["n"] += len(ids)
            done.clear()
            t0 = time.time()
            tasks = []
            for k, i in enumerate(ids):
                if pace:
                    delay = t0 + k / pace - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(publish(i)))
            await asyncio.gather(*tasks)
            published = time.time()
            await asyncio.wait_for(done.wait(), 300)
            lat = [received[i] - sent[i] for i in ids]
            first, last = min(sent[i] for i in ids), max(received[i] for i in ids)
            return {"messages": len(ids), "msgs_per_s": round(len(ids) / (last - first), 1),
                    "publish_rate_per_s": round(len(ids) / max(published - t0, 1e-6), 1),
                    "latency_ms": {k: (round(ms(v), 2) if isinstance(v, float) else v)
                                   for k, v in percentiles(lat).items()}}

        bulk = await run(list(range(messages)), None)
        n_paced = int(rate * paced_seconds)
        paced = await run(list(range(messages, messages + n_paced)), rate) if n_paced else None
        return {"hops": 3, "queue_type": "quorum", "persistent": True, "publisher_confirms": True,
                "prefetch": prefetch, "publisher_in_flight": in_flight, "payload_bytes": payload,
                "bulk": bulk, "paced": paced, "paced_rate": rate}
    finally:
        for proc in workers:  # only the forwarders this function started
            proc.terminate()
            proc.join(10)
        await connection.close()


# --------------------------------------------------------------------------------------------------- db baseline

async def mongo_baseline(db_name: str, singles: int, batched: int, batch_size: int, concurrency: int,
                         seconds: float) -> dict:
    """Each measure stops at its document count or after ``seconds``, whichever comes first."""
    from pymongo import AsyncMongoClient, ReturnDocument

    client: AsyncMongoClient = AsyncMongoClient(MONGODB_URL, tz_aware=True, serverSelectionTimeoutMS=10_000)
    db = client[db_name]
    coll = db["raw"]

    def doc(i: int) -> dict:  # about the size and shape of an audit record
        return {"at": datetime.now(timezone.utc), "service": "bench", "step": "applied", "org": "https://bench",
                "event_uuid": uuid.uuid4().hex, "okta_user_id": f"00u{i:017d}", "app_id": "0oabench0000000000",
                "trace_id": uuid.uuid4().hex, "detail": "bench record " + "x" * 120, "n": i}

    async def timed(workers: int, limit: int, work) -> tuple[float, int]:
        """``workers`` concurrent loops calling ``work(i)`` until ``limit`` items or the time box; items/s."""
        counter = {"next": 0}
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            while counter["next"] < limit and time.perf_counter() < deadline:
                i = counter["next"]
                counter["next"] += 1
                await work(i)

        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(workers)))
        return counter["next"] / (time.perf_counter() - t0), counter["next"]

    async def one(i: int) -> None:
        await coll.insert_one(doc(i))

    async def batch(i: int) -> None:
        await coll.insert_many([doc(i * batch_size + j) for j in range(batch_size)], ordered=False)

    async def change(i: int) -> None:
        # The single-document operations one change costs the translator and the dispatcher (audit excluded):
        # assignment upsert, plan-version find_one_and_update, assignment read, link read, conditional link upsert.
        k = f"https://bench|0oabench|00u{i:017d}"
        await db.assignments.update_one({"_id": k}, {"$set": {"assigned": True, "n": i}}, upsert=True)
        await db.plan_versions.find_one_and_update({"_id": k}, {"$inc": {"v": 1}}, upsert=True,
                                                   return_document=ReturnDocument.AFTER)
        await db.assignments.find_one({"_id": k})
        await db.links.find_one({"_id": k})
        await db.links.update_one({"_id": k, "applied_version": {"$lt": 1}},
                                  {"$set": {"applied_version": 1, "target_id": str(i)}}, upsert=True)

    try:
        await coll.insert_one(doc(-1))  # connection and collection exist before timing
        single, n_single = await timed(1, singles, one)
        concurrent, n_conc = await timed(concurrency, singles, lambda i: one(singles + i))
        many, n_batches = await timed(1, max(1, batched // batch_size), batch)
        mix, n_mix = await timed(64, singles, change)
        return {"insert_one_per_s": round(single, 1), "insert_one_docs": n_single,
                "insert_one_concurrent_per_s": round(concurrent, 1), "insert_one_concurrent_docs": n_conc,
                "concurrency": concurrency,
                "insert_many_docs_per_s": round(many * batch_size, 1), "insert_many_docs": n_batches * batch_size,
                "batch_size": batch_size,
                "pipeline_op_mix_changes_per_s": round(mix, 1), "pipeline_op_mix_changes": n_mix,
                "pipeline_op_mix_concurrency": 64, "pipeline_op_mix_ops_per_change": 5, "time_box_s": seconds}
    finally:
        await client.drop_database(db_name)
        await client.close()


async def mongo_opcounters() -> dict[str, int] | None:
    """Server-wide operation counters (include anything else using the server at the same time)."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(MONGODB_URL, serverSelectionTimeoutMS=5000)
    try:
        return dict((await client.admin.command("serverStatus")).get("opcounters") or {})
    except Exception:  # noqa: BLE001 - not every MongoDB-wire server answers serverStatus
        return None
    finally:
        await client.close()


# ---------------------------------------------------------------------------------------------- pipeline scenarios

@dataclass
class WriteLog:
    """Incrementally reads the target's request log (it keeps the last 10,000 requests only)."""

    target: Any
    since: int = 0
    entries: list[dict] = field(default_factory=list)

    async def pull(self) -> list[dict]:
        new = await self.target.requests(self.since)
        if new:
            self.since = max(e["seq"] for e in new)
            self.entries.extend(new)
        return new


def is_user_write(entry: dict) -> bool:
    path = entry.get("path") or ""
    return entry.get("method") in ("POST", "PUT") and "/Users" in path and isinstance(entry.get("body"), dict)


def connector(stack, app_id: str, max_concurrency: int | None) -> dict:
    out = {"okta_app_id": app_id, "name": "bench", "base_url": f"{stack.target_url}/scim/v2/",
           "auth": {"type": "header", "header_name": "Authorization", "value_env": "DEMO_TARGET_TOKEN",
                    "value_prefix": "Bearer "}, "timeout_s": 10}
    if max_concurrency:
        out["max_concurrency"] = max_concurrency
    return out


def bucket_delta(before: dict, after: dict, changes: int) -> dict[str, Any]:
    calls_b, calls_a = before.get("callsByBucket", {}), after.get("callsByBucket", {})
    calls = {b: calls_a.get(b, 0) - calls_b.get(b, 0) for b in sorted(set(calls_a) | set(calls_b))}

    def rejected(stats: dict) -> int:
        return sum(sum(per_token.values()) for per_token in (stats.get("rateLimited") or {}).values())

    return {"calls": {b: n for b, n in calls.items() if n},
            "per_change": {b: round(n / changes, 4) for b, n in calls.items() if n and changes},
            "rate_limited_429": rejected(after) - rejected(before),
            "limits_per_min_for_token": after.get("limits"), "plan": after.get("plan"),
            "token_share": after.get("tokenShare")}


async def audit_counts(audit_url: str) -> dict[str, int]:
    out: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=30) as http:
        for step in ("retried", "dead_lettered", "held"):
            with suppress(httpx.HTTPError):
                response = await http.get(f"{audit_url}/audit", params={"status": step, "limit": 1000})
                out[step] = len(response.json()["items"])
    return out


async def gather_limited(n: int, make, limit: int = 16) -> list:
    slots = asyncio.Semaphore(limit)

    async def one(i: int):
        async with slots:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def wait_converged(what: str, writes: WriteLog, done_check, total: int, timeout: float,
                         on_half=None) -> bool:
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    half_done = False
    started = time.monotonic()
    while time.monotonic() < deadline:
        await writes.pull()
        count = done_check()
        if not half_done and count >= total / 2 and on_half:
            half_done = True
            on_half()
        if count >= total:
            return True
        if time.monotonic() - last_report > 5:
            last_report = time.monotonic()
            console.log(f"{what}: {count:,}/{total:,} written ({count / (time.monotonic() - started):.0f}/s)")
        await asyncio.sleep(0.5)
    return False


async def run_stack(args, *, plan: str, users: int, paced: bool, tag: str, workdir: Path) -> dict[str, Any]:
    from demo_scim_target.admin_client import TargetAdmin
    from tests.harness.devstack import DevStack
    from okta_simulator.admin_client import SimulatorAdmin

    vhost, url = new_vhost(tag)
    db = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    stack = DevStack(workdir / tag, rabbitmq_url=url, mongodb_db=db, plan=plan, extra_env=extra_env)
    result: dict[str, Any] = {"plan": plan, "users": users, "vhost": vhost, "database": db,
                              "logs": str(workdir / tag), "service_env": extra_env}
    sampler: ProcSampler | None = None
    depths: QueueDepths | None = None
    try:
        stack.start_fixtures()
        async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
            app_id = await okta.create_app("Bench", "bench")
            t0 = time.time()
            # one at a time: concurrent admin user creations race in the simulator (its sync handlers run in a
            # thread pool and find_user iterates the users dict while another thread inserts)
            user_ids: list[str] = await gather_limited(users, lambda i: okta.create_user(
                {"login": f"bench{i:06d}@example.com", "email": f"bench{i:06d}@example.com",
                 "firstName": "Bench", "lastName": f"User{i}", "displayName": f"Bench User{i}"}), limit=1)
            console.log(f"[{tag}] {users:,} users created in the simulator in {time.time() - t0:.1f}s")
            stack.write_connectors([connector(stack, app_id, args.max_concurrency)])
            stack.start_services(dispatchers=args.dispatchers)

            async def ready() -> bool:
                calls = (await okta.stats()).get("callsByBucket", {})
                return calls.get("logs", 0) >= 1 and calls.get("apps", 0) >= 1
            deadline = time.monotonic() + 90
            while not await ready():
                if time.monotonic() > deadline:
                    raise TimeoutError("the bridge did not start polling and syncing within 90 s")
                for name, p in stack.processes.items():
                    if not p.alive():
                        raise RuntimeError(f"{name} exited: see {p.log_path}")
                await asyncio.sleep(0.25)
            await asyncio.sleep(1.0)  # the initial (empty) full sync is planned and audited

            pids = {n: p.proc.pid for n, p in stack.processes.items() if p.proc}
            sampler = ProcSampler({**pids, **infra_pids()})
            sampler.start()
            depths = QueueDepths(url)
            depths.start()
            writes = WriteLog(target, await target.last_seq())
            result["bulk"], provisioned = await bulk_phase(args, okta, stack, app_id, user_ids, writes, sampler,
                                                           depths, tag, workdir)
            if paced and provisioned:  # a bulk phase cut by --timeout leaves fewer users to update
                result["paced"] = await paced_phase(args, okta, stack, provisioned, writes, sampler, depths, tag,
                                                    workdir)
            await depths.stop()
            await sampler.stop()
            result["memory"] = sampler.memory()
            result["audit_counts"] = await audit_counts(stack.audit_url)
            dead = [n for n, p in stack.processes.items() if not p.alive()]
            if dead:
                result["exited_services"] = dead
    except Exception as exc:  # noqa: BLE001 - reported in the figures; the other scenarios still run
        result["error"] = f"{type(exc).__name__}: {exc}"
        console.print(f"[red][{tag}] failed: {result['error']}[/]\n{traceback.format_exc()}")
        console.print(stack.logs()[-4000:])
    finally:
        if depths:
            await depths.stop()
        if sampler:
            await sampler.stop()
        stack.stop()
        drop_db(db)
        drop_vhost(vhost)
    return result


async def bulk_phase(args, okta, stack, app_id: str, user_ids: list[str], writes: WriteLog,
                     sampler: ProcSampler, depths: QueueDepths, tag: str,
                     workdir: Path) -> tuple[dict[str, Any], list[str]]:
    """Returns the figures and the users provisioned in the target."""
    n = len(user_ids)
    before, ops_before = await okta.stats(), await mongo_opcounters()
    wanted = set(user_ids)
    first_write: dict[str, float] = {}
    statuses: dict[str, int] = {}
    posts: dict[str, int] = {}

    def scan() -> int:
        for entry in writes.entries[scan.done:]:
            if not is_user_write(entry):
                continue
            user_id = entry["body"].get("externalId")
            if user_id in wanted:
                first_write.setdefault(user_id, epoch(entry["time"]))
                if entry["method"] == "POST":
                    posts[user_id] = posts.get(user_id, 0) + 1
            statuses[str(entry.get("status"))] = statuses.get(str(entry.get("status")), 0) + 1
        scan.done = len(writes.entries)
        return len(first_write)
    scan.done = 0

    top: list[str] = []
    sampler.mark(f"{tag}.bulk.start")
    t_assign = time.time()
    assigned_at: dict[str, float] = {}

    async def assign(i: int) -> None:
        await okta.assign_user(app_id, user_ids[i])
        assigned_at[user_ids[i]] = time.time()

    assigner = asyncio.create_task(gather_limited(n, assign, args.admin_concurrency))
    converged = await wait_converged(f"[{tag}] bulk", writes, scan, n, args.timeout,
                                     on_half=lambda: top.extend(top_snapshot(workdir / f"top-{tag}-bulk.txt")))
    await assigner
    assign_s = max(assigned_at.values()) - t_assign
    sampler.mark(f"{tag}.bulk.end")
    await asyncio.sleep(1.0)  # the last audit records and poll land before the counters are read
    after, ops_after = await okta.stats(), await mongo_opcounters()

    published, by_uuid = {}, {}
    for event in await okta.events():
        if event.get("eventType") != "application.user_membership.add":
            continue
        targets = {t["type"]: t["id"] for t in event.get("target") or []}
        if targets.get("AppInstance") == app_id and targets.get("User") in wanted:
            published[targets["User"]] = by_uuid[event["uuid"]] = epoch(event["published"])
    lat = [first_write[u] - published[u] for u in first_write if u in published]
    lat_admin = [first_write[u] - assigned_at[u] for u in first_write if u in assigned_at]
    start = min(published.values()) if published else t_assign
    end = max(first_write.values()) if first_write else time.time()
    done = len(first_write)
    return {
        "converged": converged, "changes": n, "written": done,
        "changes_per_s": round(done / max(end - start, 1e-6), 1),
        "elapsed_s": round(end - start, 2),
        "offered_assign_rate_per_s": round(n / max(assign_s, 1e-6), 1),
        "latency_ms": {k: (round(ms(v), 1) if isinstance(v, float) else v) for k, v in percentiles(lat).items()},
        "latency_from_admin_return_ms": {k: (round(ms(v), 1) if isinstance(v, float) else v)
                                         for k, v in percentiles(lat_admin).items()},
        "stages_ms": await stage_breakdown(stack.mongodb_db, by_uuid, t_assign),
        "queue_peak_ready": depths.peaks(t_assign, time.time()),
        "duplicate_posts": sum(1 for c in posts.values() if c > 1),
        "target_statuses": statuses,
        "okta": bucket_delta(before, after, n),
        "mongo_ops_per_change_serverwide": _ops_per_change(ops_before, ops_after, n),
        "cpu_percent": sampler.cpu(f"{tag}.bulk.start", f"{tag}.bulk.end"),
        "top": top,
    }, [u for u in user_ids if u in first_write]


async def stage_breakdown(db_name: str, published: dict[str, float], since: float) -> dict[str, Any]:
    """Per change, from the audit trail: System Log -> poller published it (``received``) -> translator published
    the plan (``planned``) -> dispatcher wrote the target and its link (``applied``); p50/p95/p99 ms of each gap."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(MONGODB_URL, tz_aware=True, serverSelectionTimeoutMS=10_000)
    steps: dict[str, dict[str, float]] = {}
    try:
        cursor = client[db_name].audit.find({"at": {"$gte": datetime.fromtimestamp(since - 5, timezone.utc)}},
                                            {"event_uuid": 1, "step": 1, "at": 1, "_id": 0})
        async for doc in cursor:
            uuid_ = doc.get("event_uuid")
            if uuid_ in published:
                steps.setdefault(uuid_, {}).setdefault(doc["step"], doc["at"].timestamp())
    finally:
        await client.close()
    gaps: dict[str, list[float]] = {"log_to_poller": [], "poller_to_translator": [], "translator_to_dispatcher": []}
    for uuid_, at in steps.items():
        if "received" in at:
            gaps["log_to_poller"].append(at["received"] - published[uuid_])
            if "planned" in at:
                gaps["poller_to_translator"].append(at["planned"] - at["received"])
                if "applied" in at:
                    gaps["translator_to_dispatcher"].append(at["applied"] - at["planned"])
    return {k: {q: (round(ms(v), 1) if isinstance(v, float) else v) for q, v in percentiles(vals).items()}
            for k, vals in gaps.items()}


def _ops_per_change(before: dict | None, after: dict | None, n: int) -> dict[str, float] | None:
    if not before or not after or not n:
        return None
    return {k: round((after.get(k, 0) - before.get(k, 0)) / n, 2) for k in after if after.get(k, 0) != before.get(k, 0)}


async def paced_phase(args, okta, stack, user_ids: list[str], writes: WriteLog, sampler: ProcSampler,
                      depths: QueueDepths, tag: str, workdir: Path) -> dict[str, Any]:
    total = int(args.rate * args.rate_seconds)
    before, ops_before = await okta.stats(), await mongo_opcounters()
    value_of = [f"P{i:07d}" for i in range(total)]
    owner = [user_ids[i % len(user_ids)] for i in range(total)]
    last_value = {owner[i]: value_of[i] for i in range(total)}  # what each user must end up with
    sent_at: dict[str, float] = {}
    written_at: dict[str, float] = {}
    final_seen: set[str] = set()
    index_of = {v: i for i, v in enumerate(value_of)}

    def scan() -> int:
        for entry in writes.entries[scan.done:]:
            if not is_user_write(entry):
                continue
            given = ((entry["body"].get("name") or {}).get("givenName")) or ""
            if given in index_of:
                written_at.setdefault(given, epoch(entry["time"]))
                if last_value.get(entry["body"].get("externalId")) == given:
                    final_seen.add(given)
        scan.done = len(writes.entries)
        return len(final_seen)
    scan.done = len(writes.entries)

    top: list[str] = []
    sampler.mark(f"{tag}.paced.start")
    t0 = time.time() + 0.2
    slots = asyncio.Semaphore(args.admin_concurrency)
    lag: list[float] = []

    async def update(i: int) -> None:
        async with slots:
            await okta.update_profile(owner[i], {"firstName": value_of[i]})
            sent_at[value_of[i]] = time.time()

    async def pace() -> None:
        tasks = []
        for i in range(total):
            delay = t0 + i / args.rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag.append(-delay)
            tasks.append(asyncio.create_task(update(i)))
            if i == total // 2:
                top.extend(top_snapshot(workdir / f"top-{tag}-paced.txt"))
        await asyncio.gather(*tasks)

    pacer = asyncio.create_task(pace())
    converged = await wait_converged(f"[{tag}] paced {args.rate:g}/s", writes, scan, len(last_value),
                                     args.rate_seconds + args.timeout)
    await pacer
    offered_s = max(sent_at.values()) - min(sent_at.values()) if sent_at else 0
    sampler.mark(f"{tag}.paced.end")
    await asyncio.sleep(1.0)
    after, ops_after = await okta.stats(), await mongo_opcounters()

    # the i-th update event of a user is the i-th update sent to that user (updates of a user are seconds apart)
    events_by_user: dict[str, list[float]] = {}
    by_uuid: dict[str, float] = {}
    for event in await okta.events():
        if event.get("eventType") == "user.account.update_profile":
            uid = next((t["id"] for t in event.get("target") or [] if t["type"] == "User"), None)
            events_by_user.setdefault(uid, []).append(epoch(event["published"]))
            by_uuid[event["uuid"]] = epoch(event["published"])
    published: dict[str, float] = {}
    for uid, times in events_by_user.items():
        mine = [value_of[i] for i in range(total) if owner[i] == uid]
        published.update(zip(mine, sorted(times)[-len(mine):]))
    lat = [written_at[v] - published[v] for v in written_at if v in published]
    return {
        "converged": converged, "offered": total, "target_rate_per_s": args.rate,
        "achieved_offered_rate_per_s": round(total / max(offered_s, 1e-6), 1),
        "written": len(written_at), "coalesced_or_missing": total - len(written_at),
        "latency_ms": {k: (round(ms(v), 1) if isinstance(v, float) else v) for k, v in percentiles(lat).items()},
        "pacer_lag_max_ms": round(ms(max(lag)), 1) if lag else 0.0,
        "stages_ms": await stage_breakdown(stack.mongodb_db, by_uuid, t0),
        "queue_peak_ready": depths.peaks(t0, time.time()),
        "okta": bucket_delta(before, after, total),
        "mongo_ops_per_change_serverwide": _ops_per_change(ops_before, ops_after, total),
        "cpu_percent": sampler.cpu(f"{tag}.paced.start", f"{tag}.paced.end"),
        "top": top,
    }


# --------------------------------------------------------------------------------------------------- group scenario

GROUP_BIG, GROUP_TEAM, GROUP_TEAMS = 5000, 100, 50
VERIFY_UA = "okta-bridge-bench-verify"  # the bench's own SCIM reads, left out of the request counts


def group_sizes(scale: float) -> tuple[int, int, int]:
    """(members of the big group, members of each team group, team groups) at ``--group-scale``."""
    return max(1, round(GROUP_BIG * scale)), max(1, round(GROUP_TEAM * scale)), GROUP_TEAMS


class TargetGroupReader:
    """The target's groups read over its own SCIM API, as any SCIM client would (``GET /Groups`` paged), with a
    user agent of its own so that these reads are told apart from the bridge's in the request log."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=60,
                                      headers={"Authorization": f"Bearer {token}", "User-Agent": VERIFY_UA})
        self.reads = 0
        self.ids: dict[str, str] = {}  # displayName -> target group id, as last read

    async def groups(self) -> dict[str, list[str]]:
        """displayName -> member values (target user ids), in the target's order."""
        out: dict[str, list[str]] = {}
        start = 1
        while True:
            self.reads += 1
            response = await self.http.get("/Groups", params={"startIndex": start, "count": 100})
            response.raise_for_status()
            data = response.json()
            page = data.get("Resources") or []
            for group in page:
                out[group["displayName"]] = [m["value"] for m in group.get("members") or []]
                self.ids[group["displayName"]] = group["id"]
            start += len(page)
            if not page or start > int(data.get("totalResults", 0)):
                return out

    async def aclose(self) -> None:
        await self.http.aclose()


def scim_request_kind(entry: dict) -> str:
    method, path, query = entry.get("method"), entry.get("path") or "", entry.get("query") or ""
    if "/Groups" in path:
        if path.rstrip("/").endswith("/Groups"):
            return f"{method} /Groups" + ("?filter" if "filter" in query else "")
        return f"{method} /Groups/{{id}}"
    if "/Users" in path:
        return f"{method} /Users" + ("/{id}" if not path.rstrip("/").endswith("/Users") else "")
    return f"{method} other"


def patch_member_count(body: Any) -> int:
    if not isinstance(body, dict):
        return 0
    if isinstance(body.get("Operations"), list):  # 2.0: add carries a list; remove is one op per member
        return sum(len(op["value"]) if isinstance(op.get("value"), list) else 1 for op in body["Operations"]
                   if isinstance(op, dict) and str(op.get("path", "")).startswith("members"))
    return len(body.get("members") or [])  # 1.1


async def wait_provisioned(okta_users: list[str], target, stack, app_id: str, timeout: float, tag: str) -> int:
    """Setup: waits until every user has an account on the target and its link in the database (the dispatcher
    writes the link after the SCIM write; group push only pushes members whose link exists)."""
    from pymongo import AsyncMongoClient

    wanted = set(okta_users)
    deadline = time.monotonic() + timeout
    started, last_report = time.monotonic(), 0.0
    client: AsyncMongoClient = AsyncMongoClient(MONGODB_URL, serverSelectionTimeoutMS=10_000)
    try:
        links = client[stack.mongodb_db].links
        on_target = 0
        while time.monotonic() < deadline:
            on_target = sum(1 for u in await target.users() if u.get("externalId") in wanted)
            if on_target >= len(wanted):
                linked = await links.count_documents({"app_id": app_id, "target_id": {"$ne": None}})
                if linked >= len(wanted):
                    return linked
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                console.log(f"[{tag}] setup: {on_target:,}/{len(wanted):,} users provisioned "
                            f"({on_target / max(time.monotonic() - started, 1e-6):.0f}/s)")
            await asyncio.sleep(2.0)
        return on_target
    finally:
        await client.close()


async def group_audit(db_name: str, since: float) -> dict[str, Any]:
    """From the audit trail: when the translator planned each group push, when the dispatcher applied it, and what
    the dispatcher said it did (e.g. "5000 added, 0 removed in 50 request(s)")."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(MONGODB_URL, tz_aware=True, serverSelectionTimeoutMS=10_000)
    rows: list[dict] = []
    try:
        cursor = client[db_name].audit.find(
            {"at": {"$gte": datetime.fromtimestamp(since - 1, timezone.utc)}, "okta_group_id": {"$ne": None}},
            {"_id": 0, "at": 1, "step": 1, "service": 1, "okta_group_id": 1, "okta_user_id": 1, "detail": 1})
        rows = [doc async for doc in cursor]
    finally:
        await client.close()
    steps: dict[str, int] = {}
    planned: dict[str, float] = {}
    applied: dict[str, tuple[float, str]] = {}
    for row in rows:
        steps[row["step"]] = steps.get(row["step"], 0) + 1
        at, gid = row["at"].timestamp(), row["okta_group_id"]
        if row["step"] == "planned" and not row.get("okta_user_id"):
            planned[gid] = min(planned.get(gid, at), at)
        elif row["step"] == "applied" and not row.get("okta_user_id"):
            applied[gid] = max(applied.get(gid, (at, "")), (at, row.get("detail") or ""))
    return {"steps": steps, "planned": planned, "applied": applied}


async def run_groups(args, *, tag: str, workdir: Path) -> dict[str, Any]:
    """Group push: one big group and ``GROUP_TEAMS`` team groups, every member provisioned in the app first
    (setup, not measured); then the services that read the connectors file are restarted with ``push_groups``
    naming every group (what an operator does to start pushing), and the push is measured from that restart until
    the target's groups, read back over SCIM, have exactly Okta's members."""
    from demo_scim_target.admin_client import TargetAdmin
    from tests.harness.devstack import DevStack
    from okta_simulator.admin_client import SimulatorAdmin

    big, team, teams = group_sizes(args.group_scale)
    n_users = max(big, team * teams)
    vhost, url = new_vhost(tag)
    db = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    stack = DevStack(workdir / tag, rabbitmq_url=url, mongodb_db=db, plan="generous", extra_env=dict(extra_env))
    result: dict[str, Any] = {"plan": "generous", "scale": args.group_scale, "users": n_users,
                              "groups": {"big": big, "team_size": team, "teams": teams}, "vhost": vhost,
                              "database": db, "logs": str(workdir / tag), "service_env": extra_env}
    sampler: ProcSampler | None = None
    depths: QueueDepths | None = None
    reader: TargetGroupReader | None = None
    try:
        stack.start_fixtures()
        async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
            # --- setup (not measured): users assigned, groups and their members in Okta, users provisioned --------
            app_id = await okta.create_app("Bench", "bench")
            t0 = time.time()
            user_ids: list[str] = await gather_limited(n_users, lambda i: okta.create_user(
                {"login": f"gbench{i:06d}@example.com", "email": f"gbench{i:06d}@example.com",
                 "firstName": "Group", "lastName": f"Bench{i}", "displayName": f"Group Bench{i}"}), limit=1)
            await gather_limited(n_users, lambda i: okta.assign_user(app_id, user_ids[i]), args.admin_concurrency)
            names = ["Bench All"] + [f"Bench Team {k:02d}" for k in range(teams)]
            expected: dict[str, set[str]] = {names[0]: set(user_ids[:big])}
            for k in range(teams):
                expected[names[k + 1]] = set(user_ids[k * team:(k + 1) * team])
            group_ids = {name: await okta.create_group(name) for name in names}
            pairs = [(group_ids[name], u) for name in names for u in sorted(expected[name])]
            await gather_limited(len(pairs), lambda i: okta.add_group_member(*pairs[i]), args.admin_concurrency)
            console.log(f"[{tag}] setup: {n_users:,} users assigned, {len(names)} groups with {len(pairs):,} "
                        f"memberships created in the simulator in {time.time() - t0:.1f}s")
            # The bridge starts after all that: its first start reads the System Log from now (the memberships made
            # above are history to it, as for a bridge installed in an org that has groups) and provisions the
            # assigned users through its initial full sync.
            stack.extra_env["POLLER_START_FROM"] = datetime.now(timezone.utc).isoformat()
            base_connector = connector(stack, app_id, args.max_concurrency)
            stack.write_connectors([base_connector])
            stack.start_services(dispatchers=args.dispatchers)
            t1 = time.time()
            linked = await wait_provisioned(user_ids, target, stack, app_id, args.group_setup_timeout, tag)
            result["setup"] = {"users_provisioned": linked, "provision_s": round(time.time() - t1, 1)}
            if linked < n_users:
                raise TimeoutError(f"setup: only {linked:,}/{n_users:,} users provisioned within "
                                   f"{args.group_setup_timeout:g}s (--group-setup-timeout)")
            console.log(f"[{tag}] setup: {linked:,} users provisioned in {time.time() - t1:.1f}s")
            await asyncio.sleep(2.0)  # the last audit records land; the poller is idle
            ext_of = {u["id"]: u.get("externalId") for u in await target.users()}

            # --- the push (measured) ------------------------------------------------------------------------------
            restarted = [n for n in stack.processes if n.startswith(("translator", "scim_dispatcher", "queue_poller"))]
            for name in restarted:
                stack.processes[name].stop()
            entry = {**base_connector, "push_groups": names}
            if args.group_batch_size:
                entry["membership_batch_size"] = args.group_batch_size
            stack.write_connectors([entry])
            writes = WriteLog(target, await target.last_seq())
            before, ops_before = await okta.stats(), await mongo_opcounters()
            t_start = time.time()
            for name in restarted:
                stack.restart(name)
            pids = {n: p.proc.pid for n, p in stack.processes.items() if p.proc and p.alive()}
            sampler = ProcSampler({**pids, **infra_pids()})
            sampler.start()
            sampler.mark(f"{tag}.push.start")
            depths = QueueDepths(url)
            depths.start()
            reader = TargetGroupReader(f"{stack.target_url}/scim/v2", stack.target_token)

            total = sum(len(v) for v in expected.values())
            top: list[str] = []
            converged, verified_at, landed = False, None, 0
            deadline = time.monotonic() + args.timeout
            last_report = time.monotonic()
            while time.monotonic() < deadline:
                await writes.pull()
                on_target = await reader.groups()
                landed, exact = 0, 0
                for name, want in expected.items():
                    members = [ext_of.get(m, m) for m in on_target.get(name, [])]
                    landed += len(want & set(members))
                    exact += len(members) == len(want) and set(members) == want
                if exact == len(expected) and len(on_target) == len(expected):
                    converged, verified_at = True, time.time()
                    break
                if not top and landed >= total / 2:
                    top.extend(top_snapshot(workdir / f"top-{tag}-push.txt"))
                if time.monotonic() - last_report > 5:
                    last_report = time.monotonic()
                    console.log(f"[{tag}] push: {landed:,}/{total:,} memberships on the target, "
                                f"{exact}/{len(expected)} groups exact ({time.time() - t_start:.0f}s)")
                for name, p in stack.processes.items():
                    if not p.alive():
                        raise RuntimeError(f"{name} exited: see {p.log_path}")
                await asyncio.sleep(args.group_check_interval)
            sampler.mark(f"{tag}.push.end")
            await asyncio.sleep(1.5)  # the last audit records and poll land before the counters are read
            await writes.pull()
            after, ops_after = await okta.stats(), await mongo_opcounters()
            await depths.stop()
            await sampler.stop()

            bridge = [e for e in writes.entries if e.get("user_agent") != VERIFY_UA]
            kinds: dict[str, int] = {}
            statuses: dict[str, int] = {}
            for e in bridge:
                kinds[scim_request_kind(e)] = kinds.get(scim_request_kind(e), 0) + 1
                statuses[str(e.get("status"))] = statuses.get(str(e.get("status")), 0) + 1
            group_reqs = [e for e in bridge if "/Groups" in (e.get("path") or "")]
            group_writes = [e for e in group_reqs if e["method"] in ("POST", "PATCH", "PUT", "DELETE")]
            patches = [e for e in group_reqs if e["method"] == "PATCH"]
            members_sent = [patch_member_count(e.get("body")) for e in patches]
            audit = await group_audit(db, t_start)
            big_id = group_ids[names[0]]
            okta_delta = bucket_delta(before, after, total)
            groups_floor = len(names) + sum(-(-len(v) // 200) for v in expected.values())
            last_write = max((epoch(e["time"]) for e in group_writes), default=None)
            first_req = min((epoch(e["time"]) for e in group_reqs), default=None)
            planned, applied = audit["planned"], audit["applied"]

            def since_start(at: float | None) -> float | None:
                return None if at is None else round(at - t_start, 2)

            big_target = reader.ids.get(names[0])
            big_patches = [epoch(e["time"]) for e in patches if big_target and e["path"].endswith("/" + big_target)]
            team_ids = [group_ids[name] for name in names[1:]]
            team_lag = [applied[g][0] - planned[g] for g in team_ids if g in applied and g in planned]

            result["push"] = {
                "converged": converged, "memberships": total, "landed": landed, "groups": len(names),
                "start": "translator, scim-dispatcher and queue-poller restarted with push_groups set",
                "converge_s": since_start(verified_at),
                "last_group_write_s": since_start(last_write),
                "first_group_request_s": since_start(first_req),
                "all_planned_s": since_start(max(planned.values())) if len(planned) == len(names) else None,
                "big_group": {"planned_s": since_start(planned.get(big_id)),
                              "first_patch_s": since_start(min(big_patches, default=None)),
                              "last_patch_s": since_start(max(big_patches, default=None)),
                              "applied_s": since_start(applied.get(big_id, (None,))[0]),
                              "dispatcher_detail": applied.get(big_id, (None, None))[1]},
                "team_groups": {"first_planned_s": since_start(min((planned[g] for g in team_ids if g in planned),
                                                                   default=None)),
                                "planned_to_applied_s": {k: (round(v, 2) if isinstance(v, float) else v)
                                                         for k, v in percentiles(team_lag).items()}},
                "check_interval_s": args.group_check_interval, "verify_reads": reader.reads,
                "scim_requests": {"total": len(bridge), "by_kind": dict(sorted(kinds.items())),
                                  "statuses": statuses,
                                  "patch_members": {"sum": sum(members_sent), "max": max(members_sent, default=0)},
                                  "patch_duration_ms": {k: (round(v, 1) if isinstance(v, float) else v)
                                                        for k, v in percentiles(
                                                            [float(e["duration_ms"]) for e in patches
                                                             if e.get("duration_ms") is not None]).items()}},
                "okta": {**okta_delta, "groups_bucket_floor": groups_floor},
                "audit_steps": audit["steps"],
                "queue_peak_ready": depths.peaks(t_start, time.time()),
                "mongo_ops_per_membership_serverwide": _ops_per_change(ops_before, ops_after, total),
                "cpu_percent": sampler.cpu(f"{tag}.push.start", f"{tag}.push.end"),
                "restarted": restarted,
                "top": top,
            }
            result["memory"] = sampler.memory()
            result["audit_counts"] = await audit_counts(stack.audit_url)
            dead = [n for n, p in stack.processes.items() if not p.alive()]
            if dead:
                result["exited_services"] = dead
    except Exception as exc:  # noqa: BLE001 - reported in the figures; the other scenarios still run
        result["error"] = f"{type(exc).__name__}: {exc}"
        console.print(f"[red][{tag}] failed: {result['error']}[/]\n{traceback.format_exc()}")
        console.print(stack.logs()[-4000:])
    finally:
        if reader:
            await reader.aclose()
        if depths:
            await depths.stop()
        if sampler:
            await sampler.stop()
        stack.stop()
        drop_db(db)
        drop_vhost(vhost)
    return result


# ------------------------------------------------------------------------------------------------------- reporting

def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return None if not a or not b else round(a / b, digits)


def compute_ratios(report: dict) -> dict[str, Any]:
    base = report.get("baselines") or {}
    rabbit, mongo = base.get("rabbitmq") or {}, base.get("mongodb") or {}
    out: dict[str, Any] = {}
    for name, phase in (("bulk", ("bulk", "bulk")), ("workforce", ("workforce", "bulk"))):
        figures = ((report.get("scenarios") or {}).get(phase[0]) or {}).get(phase[1]) or {}
        rate = figures.get("changes_per_s")
        if not rate:
            continue
        out[name] = {
            "changes_per_s_over_rabbit_3hop_msgs_per_s": ratio(rate, (rabbit.get("bulk") or {}).get("msgs_per_s")),
            "changes_per_s_over_insert_one_per_s": ratio(rate, mongo.get("insert_one_per_s")),
            "changes_per_s_over_insert_one_concurrent_per_s": ratio(rate, mongo.get("insert_one_concurrent_per_s")),
            "changes_per_s_over_insert_many_docs_per_s": ratio(rate, mongo.get("insert_many_docs_per_s")),
            "changes_per_s_over_db_op_mix_changes_per_s": ratio(rate, mongo.get("pipeline_op_mix_changes_per_s")),
        }
    paced = ((report.get("scenarios") or {}).get("bulk") or {}).get("paced") or {}
    rabbit_paced = (rabbit.get("paced") or {}).get("latency_ms") or {}
    if paced.get("latency_ms", {}).get("p50") and rabbit_paced.get("p50"):
        out["paced"] = {f"{q}_over_rabbit_3hop_{q}": ratio(paced["latency_ms"][q], rabbit_paced[q], 1)
                        for q in ("p50", "p95", "p99") if paced["latency_ms"].get(q) and rabbit_paced.get(q)}
    return out


def print_report(report: dict) -> None:
    base = report.get("baselines") or {}
    rabbit, mongo = base.get("rabbitmq") or {}, base.get("mongodb") or {}
    if rabbit or mongo:
        t = Table(title="Baselines (infrastructure alone)")
        t.add_column("measure")
        t.add_column("rate", justify="right")
        t.add_column("p50 / p95 / p99 ms", justify="right")
        for key, label in (("bulk", "RabbitMQ 3 hops, bulk"), ("paced", "RabbitMQ 3 hops, paced")):
            r = rabbit.get(key)
            if r:
                lat = r["latency_ms"]
                t.add_row(f"{label} ({r['messages']:,} msgs)", f"{fmt(r['msgs_per_s'])} msg/s",
                          f"{fmt(lat['p50'], 2)} / {fmt(lat['p95'], 2)} / {fmt(lat['p99'], 2)}")
        if mongo:
            t.add_row("MongoDB insert_one, sequential", f"{fmt(mongo['insert_one_per_s'])} doc/s", "")
            t.add_row(f"MongoDB insert_one, {mongo['concurrency']} concurrent",
                      f"{fmt(mongo['insert_one_concurrent_per_s'])} doc/s", "")
            t.add_row(f"MongoDB insert_many, batches of {mongo['batch_size']}",
                      f"{fmt(mongo['insert_many_docs_per_s'])} doc/s", "")
            t.add_row("MongoDB per-change op mix (5 ops, 64 concurrent)",
                      f"{fmt(mongo['pipeline_op_mix_changes_per_s'])} change/s", "")
        console.print(t)

    scenarios = report.get("scenarios") or {}
    columns = []
    if (scenarios.get("bulk") or {}).get("bulk"):
        columns.append(("(a) bulk, generous", scenarios["bulk"]["bulk"]))
    if (scenarios.get("bulk") or {}).get("paced"):
        columns.append((f"(c) paced {report['args']['rate']:g}/s", scenarios["bulk"]["paced"]))
    if (scenarios.get("workforce") or {}).get("bulk"):
        columns.append(("(b) bulk, workforce 50 %", scenarios["workforce"]["bulk"]))
    if columns:
        t = Table(title="Pipeline end to end (Okta simulator -> 4 services -> demo SCIM target)")
        t.add_column("figure")
        for name, _ in columns:
            t.add_column(name, justify="right")

        def row(label: str, get) -> None:
            t.add_row(label, *[get(c) for _, c in columns])

        row("changes", lambda c: fmt(c.get("changes", c.get("offered"))))
        row("written / converged", lambda c: f"{fmt(c.get('written'))} / {'yes' if c.get('converged') else 'NO'}")
        row("changes/s", lambda c: fmt(c.get("changes_per_s")) if "changes_per_s" in c
            else f"offered {fmt(c.get('achieved_offered_rate_per_s'))}")
        for q in ("p50", "p95", "p99", "max"):
            row(f"latency {q} (ms, from published)", lambda c, q=q: fmt(c["latency_ms"].get(q), 0))
        for stage in ("log_to_poller", "poller_to_translator", "translator_to_dispatcher"):
            row(f"stage {stage} p50/p95 ms", lambda c, st=stage: "{} / {}".format(
                fmt((c.get("stages_ms") or {}).get(st, {}).get("p50"), 0),
                fmt((c.get("stages_ms") or {}).get(st, {}).get("p95"), 0)))
        for queue in QueueDepths.QUEUES:
            row(f"peak ready msgs {queue}", lambda c, q=queue: fmt((c.get("queue_peak_ready") or {}).get(q)))
        buckets = sorted({b for _, c in columns for b in c["okta"]["per_change"]})
        for b in buckets:
            row(f"Okta `{b}` calls / change", lambda c, b=b: fmt(c["okta"]["per_change"].get(b, 0.0), 4))
        row("Okta 429s received", lambda c: fmt(c["okta"]["rate_limited_429"]))
        row("duplicate POSTs", lambda c: fmt(c.get("duplicate_posts")) if "duplicate_posts" in c else "-")
        row("Mongo ops / change (server-wide)", lambda c: ", ".join(
            f"{k} {v:g}" for k, v in (c.get("mongo_ops_per_change_serverwide") or {}).items()) or "-")
        for svc in (*SERVICES, *HARNESS, "rabbitmq", "mongodb"):
            if any(svc in c.get("cpu_percent", {}) for _, c in columns):
                row(f"CPU % {svc}", lambda c, s=svc: fmt(c.get("cpu_percent", {}).get(s)))
        console.print(t)

    groups = (scenarios.get("groups") or {}).get("push")
    if groups:
        print_groups(scenarios["groups"])

    mem = Table(title="Peak RSS per process (VmHWM, MB)")
    mem.add_column("process")
    stacks = [(k, v) for k, v in scenarios.items() if v.get("memory")]
    for name, _ in stacks:
        mem.add_column(name, justify="right")
    names = [n for n in (*SERVICES, *HARNESS, "rabbitmq", "mongodb") if any(n in v["memory"] for _, v in stacks)]
    for n in names:
        mem.add_row(n, *[fmt(v["memory"].get(n, {}).get("vmhwm_mb")) for _, v in stacks])
    if stacks:
        console.print(mem)

    if groups:
        console.print("  groups column: VmHWM of the restarted translator, dispatcher and poller covers the push "
                      "alone; the audit-recorder's and the harness' cover the setup too (the group table has the "
                      "peak VmRSS sampled during the push)")

    ratios = report.get("ratios") or {}
    if ratios:
        t = Table(title="Pipeline as a ratio of the baselines")
        t.add_column("scenario")
        t.add_column("ratio")
        t.add_column("value", justify="right")
        for scenario, values in ratios.items():
            for k, v in values.items():
                t.add_row(scenario, k, fmt(v, 3))
        console.print(t)


def print_groups(scenario: dict) -> None:
    push, sizes = scenario["push"], scenario["groups"]
    setup_s = fmt(scenario["setup"]["provision_s"])
    t = Table(title=f"(d) Group push: 1 group of {sizes['big']:,} + {sizes['teams']} groups of {sizes['team_size']:,} "
                    f"members, {scenario['users']:,} users provisioned first (setup {setup_s} s, not measured)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("start", "translator, dispatcher, poller restarted with push_groups")
    t.add_row("memberships on the target / converged",
              f"{fmt(push['landed'])} of {fmt(push['memberships'])} / {'yes' if push['converged'] else 'NO'}")
    t.add_row("time to converge (verified over SCIM)",
              f"{fmt(push['converge_s'], 1, ' s')} (read back every {push['check_interval_s']:g} s)")
    t.add_row("last group write on the target (request log)", fmt(push["last_group_write_s"], 1, " s"))
    t.add_row("first group request on the target", fmt(push["first_group_request_s"], 1, " s"))
    t.add_row("all groups planned (translator, audit)", fmt(push["all_planned_s"], 1, " s"))
    big = push["big_group"]
    t.add_row("big group planned / first PATCH / last PATCH / applied",
              " / ".join(fmt(big.get(k), 1, " s") for k in ("planned_s", "first_patch_s", "last_patch_s",
                                                               "applied_s")))
    teams = push.get("team_groups") or {}
    lag = teams.get("planned_to_applied_s") or {}
    t.add_row("team groups: first planned; planned -> applied p50 / max",
              f"{fmt(teams.get('first_planned_s'), 1, ' s')}; {fmt(lag.get('p50'), 1, ' s')} / "
              f"{fmt(lag.get('max'), 1, ' s')}")
    t.add_row("big group, dispatcher said", big["dispatcher_detail"] or "-")
    scim = push["scim_requests"]
    t.add_row("SCIM requests (bridge), total", fmt(scim["total"]))
    for kind, n in scim["by_kind"].items():
        t.add_row(f"  {kind}", fmt(n))
    t.add_row("  non-2xx answers", fmt(sum(n for st, n in scim["statuses"].items() if not st.startswith("2"))))
    t.add_row("members per PATCH, max / total", f"{fmt(scim['patch_members']['max'])} / "
                                                 f"{fmt(scim['patch_members']['sum'])}")
    pd = scim["patch_duration_ms"]
    t.add_row("PATCH time on the target p50 / p95 / max ms",
              f"{fmt(pd.get('p50'), 0)} / {fmt(pd.get('p95'), 0)} / {fmt(pd.get('max'), 0)}")
    okta = push["okta"]
    for bucket, n in okta["calls"].items():
        t.add_row(f"Okta `{bucket}` calls", fmt(n))
    t.add_row("  `groups` floor (1 search per name + ceil(members/200) pages)", fmt(okta["groups_bucket_floor"]))
    t.add_row("Okta 429s received", fmt(okta["rate_limited_429"]))
    for queue in QueueDepths.QUEUES:
        t.add_row(f"peak ready msgs {queue}", fmt((push.get("queue_peak_ready") or {}).get(queue)))
    t.add_row("audit steps (group records)", ", ".join(f"{k} {v}" for k, v in sorted(push["audit_steps"].items())))
    t.add_row("Mongo ops / membership (server-wide)", ", ".join(
        f"{k} {v:g}" for k, v in (push.get("mongo_ops_per_membership_serverwide") or {}).items()) or "-")
    memory = scenario.get("memory") or {}
    for svc in (*SERVICES, *HARNESS, "rabbitmq", "mongodb"):
        names = [n for n in memory if n == svc or n.startswith(svc + "-")]
        for n in names:
            t.add_row(f"peak RSS MB {n} (sampled during the push)", fmt(memory[n]["peak_rss_mb"]))
    for svc, value in (push.get("cpu_percent") or {}).items():
        t.add_row(f"CPU % {svc}", fmt(value))
    console.print(t)


# ------------------------------------------------------------------------------------------------------------ main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=2000, help="users assigned in the bulk scenario (a)")
    p.add_argument("--workforce-users", type=int, default=500, help="users assigned in the Workforce scenario (b)")
    p.add_argument("--rate", type=float, default=100.0, help="offered changes/s in the paced scenario (c)")
    p.add_argument("--rate-seconds", type=float, default=20.0, help="duration of the paced scenario (c)")
    p.add_argument("--scenarios", default=",".join(ALL_SCENARIOS),
                   help=f"comma-separated subset of {','.join(ALL_SCENARIOS)}")
    p.add_argument("--baseline-messages", type=int, default=None, help="RabbitMQ baseline messages (default --users)")
    p.add_argument("--baseline-paced-seconds", type=float, default=5.0,
                   help="RabbitMQ baseline at --rate msgs/s for this long (latency)")
    p.add_argument("--db-docs", type=int, default=2000, help="documents for each insert_one baseline")
    p.add_argument("--db-batched-docs", type=int, default=20000, help="documents for the insert_many baseline")
    p.add_argument("--db-seconds", type=float, default=8.0, help="time box of each database baseline measure")
    p.add_argument("--db-batch", type=int, default=500, help="insert_many batch size (the audit-recorder's)")
    p.add_argument("--max-concurrency", type=int, default=None,
                   help="connector max_concurrency (default: the connector default)")
    p.add_argument("--dispatchers", type=int, default=1, help="scim-dispatcher processes")
    p.add_argument("--admin-concurrency", type=int, default=16, help="concurrent simulator admin calls")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the four services (repeatable), e.g. POLLER_IDLE_INTERVAL_S=1")
    p.add_argument("--timeout", type=float, default=150.0,
                   help="seconds a phase may take to converge (then its partial figures are reported)")
    p.add_argument("--group-scale", type=float, default=1.0,
                   help=f"scales the group scenario's sizes: one group of {GROUP_BIG:,} x SCALE members and "
                        f"{GROUP_TEAMS} groups of {GROUP_TEAM} x SCALE (e.g. 0.1 for a quick run)")
    p.add_argument("--group-batch-size", type=int, default=None,
                   help="connector membership_batch_size in the group scenario (default: the connector default)")
    p.add_argument("--group-setup-timeout", type=float, default=1200.0,
                   help="seconds the group scenario's setup may take to provision its users")
    p.add_argument("--group-check-interval", type=float, default=1.0,
                   help="seconds between the group scenario's SCIM read-backs of the target's groups")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(ALL_SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s) {sorted(unknown)}")
    if args.group_scale <= 0:
        p.error("--group-scale must be positive")
    if any("=" not in kv for kv in args.env):
        p.error("--env takes KEY=VALUE")
    args.baseline_messages = args.baseline_messages or args.users
    return args


async def amain(args: argparse.Namespace) -> int:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = ROOT / ".run"
    workdir = run_dir / f"bench-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(), "args": {k: v for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "loadavg_at_start": os.getloadavg()},
        "baselines": {}, "scenarios": {},
    }
    started = time.monotonic()
    failed = False

    if "baselines" in args.scenarios:
        vhost, url = new_vhost("raw")
        try:
            console.log(f"RabbitMQ baseline: {args.baseline_messages:,} messages through 3 hops, then paced")
            report["baselines"]["rabbitmq"] = await rabbit_baseline(
                url, args.baseline_messages, args.rate, args.baseline_paced_seconds, prefetch=64, in_flight=64,
                payload=1500)
        except Exception as exc:  # noqa: BLE001
            failed = True
            report["baselines"]["rabbitmq"] = {"error": f"{type(exc).__name__}: {exc}"}
            console.print_exception()
        finally:
            drop_vhost(vhost)
        try:
            console.log("MongoDB baseline: insert_one and insert_many")
            report["baselines"]["mongodb"] = await mongo_baseline(
                f"bench_raw_{uuid.uuid4().hex[:8]}", args.db_docs, args.db_batched_docs, args.db_batch, 16,
                args.db_seconds)
        except Exception as exc:  # noqa: BLE001
            failed = True
            report["baselines"]["mongodb"] = {"error": f"{type(exc).__name__}: {exc}"}
            console.print_exception()

    if "bulk" in args.scenarios or "paced" in args.scenarios:
        if "bulk" not in args.scenarios:
            console.log("the paced scenario needs provisioned users: running the bulk assignment first")
        console.log(f"scenario (a) bulk: {args.users:,} users, plan generous"
                    + (f"; then (c) paced {args.rate:g}/s for {args.rate_seconds:g}s" if "paced" in args.scenarios
                       else ""))
        report["scenarios"]["bulk"] = await run_stack(args, plan="generous", users=args.users,
                                                      paced="paced" in args.scenarios, tag="bulk", workdir=workdir)
    if "workforce" in args.scenarios:
        console.log(f"scenario (b) workforce: {args.workforce_users:,} users, plan workforce, 50 % token share")
        report["scenarios"]["workforce"] = await run_stack(args, plan="workforce", users=args.workforce_users,
                                                           paced=False, tag="workforce", workdir=workdir)
    if "groups" in args.scenarios:
        big, team, teams = group_sizes(args.group_scale)
        console.log(f"scenario (d) groups: push 1 group of {big:,} members and {teams} groups of {team:,} "
                    f"({max(big, team * teams):,} users provisioned first), plan generous")
        report["scenarios"]["groups"] = await run_groups(args, tag="groups", workdir=workdir)

    for s in report["scenarios"].values():
        if "error" in s or any(not (s.get(k) or {"converged": True})["converged"]
                                    for k in ("bulk", "paced", "push")):
            failed = True
    report["ratios"] = compute_ratios(report)
    report["total_runtime_s"] = round(time.monotonic() - started, 1)
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    out = run_dir / f"bench-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    console.print(f"figures: {out.relative_to(ROOT)}   logs and top snapshots: {workdir.relative_to(ROOT)}/   "
                  f"total {report['total_runtime_s']:.0f}s")
    return 1 if failed else 0


async def _run_cancellable(args: argparse.Namespace) -> int:
    """SIGINT/SIGTERM cancel the run, so every ``finally`` stops what it started and removes its vhost and database."""
    import signal

    task = asyncio.create_task(amain(args))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        console.print("[yellow]interrupted: stopped what the benchmark started and removed its vhosts and databases[/]")
        return 130


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_run_cancellable(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
