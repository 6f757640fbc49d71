"""The benchmark's scenarios, each on the real services as processes (``tests.harness.devstack``).

* **bulk**: a backlog of individual assignments already in the System Log when the poller reaches it (initial sync
  of an empty app, poller stopped, users assigned, poller started again); changes/s from the poller's first read of
  the backlog (its first ``received`` record) to the last SCIM write.
* **paced** and **light**: profile updates offered at a fixed rate on the bulk stack; latency from the poller's
  receipt (its ``received`` record) to the SCIM write that carries the update, and from the event's ``published``
  time to the receipt (bounded by the poll interval).
* **workforce**: bulk on the simulator's Workforce plan, the token at its default 50 % share.
* **scale-out**: twenty apps on one target answering every request in 500 ms; plans queued before the dispatchers
  start; SCIM requests per second with 1, 2 and 4 replicas over a steady window, and the peak in flight per app.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from pymongo import AsyncMongoClient

from tests.bench.infra import (
    SERVICES,
    Database,
    Marks,
    Sink,
    Stack,
    Vhost,
    WriteLog,
    command_delta,
    cpu_seconds,
    machine_idle,
    connector,
    epoch,
    peak_rss_mb,
    percentiles,
    rabbitmq_pid,
    until,
)

ADMIN_CHUNK = 2000


def _env(args, sink: Sink, **more: str) -> dict[str, str]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "POLLER_IDLE_INTERVAL_S": "1",
           "POLLER_MIN_INTERVAL_S": "0.2", **more}
    env.update(kv.split("=", 1) for kv in args.env)
    return env


async def _create_users(okta: SimulatorAdmin, n: int, prefix: str) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, ADMIN_CHUNK):
        ids += await okta.create_users([{"login": f"{prefix}{i:06d}@example.com", "email": f"{prefix}{i:06d}@example.com",
                                         "firstName": "B", "lastName": f"{i}"}
                                        for i in range(start, min(n, start + ADMIN_CHUNK))])
    return ids


async def _assign(okta: SimulatorAdmin, app_id: str, ids: list[str]) -> None:
    for start in range(0, len(ids), ADMIN_CHUNK):
        await okta.assign_users(app_id, ids[start:start + ADMIN_CHUNK])


def _log_says(stack: Stack, name: str, text: str) -> bool:
    return text in stack.processes[name].output()


class Phase:
    """The counters around a measured phase: CPU of every process, MongoDB commands per service, Okta calls."""

    def __init__(self, stack: Stack, db: Database, sink: Sink) -> None:
        self.stack, self.db, self.sink = stack, db, sink
        pids = stack.pids()
        for name, pid in (("mongodb", db.pid), ("rabbitmq", rabbitmq_pid()), ("otlp-sink", sink.process.pid)):
            if pid:
                pids[name] = pid
        self.marks = Marks(pids)

    async def start(self, okta: SimulatorAdmin) -> None:
        self.marks.mark("start")
        self.started_at = time.time()
        self.commands, self.okta = self.stack.mongo_commands(), await okta.stats()
        self.spans = self.sink.stats()["spans"]

    async def end(self, okta: SimulatorAdmin, changes: int) -> dict[str, Any]:
        self.marks.mark("end")
        cpu = self.marks.seconds("start", "end")
        commands = command_delta(self.commands, self.stack.mongo_commands())
        okta_after = await okta.stats()
        calls = {b: okta_after["callsByBucket"].get(b, 0) - self.okta["callsByBucket"].get(b, 0)
                 for b in okta_after["callsByBucket"]}
        rejected = _rate_limited(okta_after) - _rate_limited(self.okta)
        services = [n for n in cpu if n.startswith(SERVICES)]
        service_cpu = sum(cpu[n] or 0 for n in services)
        round_trips = sum(sum(c.values()) for c in commands.values())
        return {
            "changes": changes,
            "cpu_s": cpu,
            "cpu_ms_per_change_services": round(1000 * service_cpu / max(changes, 1), 2),
            "cpu_ms_per_change_all": round(1000 * sum(v or 0 for v in cpu.values()) / max(changes, 1), 2),
            "mongo_commands": commands,
            "round_trips_per_change": round(round_trips / max(changes, 1), 4),
            "okta_calls": {b: n for b, n in calls.items() if n},
            "okta_calls_per_change": round(sum(calls.values()) / max(changes, 1), 4),
            "okta_429": rejected,
            # per bucket, the most calls one token made in one of Okta's minute windows during the phase, and the
            # token's limit there (its share of the plan): an average over the phase says nothing about a window
            "okta_most_in_a_minute": _most_in_a_window(okta_after, self.started_at),
            "okta_token_limits": {b: okta_after["limits"][b] for b in calls if calls[b] and b in okta_after["limits"]},
            "spans_exported": self.sink.stats()["spans"] - self.spans,
            "peak_rss_mb": {n: peak_rss_mb(p) for n, p in self.marks.pids.items() if n.startswith(SERVICES)},
        }


def _most_in_a_window(stats: dict, since: float) -> dict[str, int]:
    """From the simulator's ``usedByWindow`` (``bucket@window start``: calls): per bucket, the most in any window
    that overlaps the phase."""
    out: dict[str, int] = {}
    for key, used in (stats.get("usedByWindow") or {}).items():
        bucket, _, window = key.partition("@")
        if int(window) + 60 > since:
            out[bucket] = max(out.get(bucket, 0), used)
    return out


def _rate_limited(stats: dict) -> int:
    """Okta 429s so far: the simulator's ``rateLimited`` is per bucket, per token."""
    return sum(sum(per_token.values()) for per_token in (stats.get("rateLimited") or {}).values())


async def _stepped(db: Database, database: str, service: str, step: str, since: float) -> dict[str, float]:
    """Per Okta user: the first time ``service`` audited ``step`` for it after ``since``."""
    from datetime import UTC, datetime
    client: AsyncMongoClient = AsyncMongoClient(db.url, tz_aware=True)
    try:
        out: dict[str, float] = {}
        cursor = client[database].audit.find({"service": service, "step": step,
                                              "at": {"$gte": datetime.fromtimestamp(since, UTC)}},
                                             {"okta_user_id": 1, "at": 1}, batch_size=10_000)
        async for doc in cursor:
            if doc.get("okta_user_id"):
                out[doc["okta_user_id"]] = min(out.get(doc["okta_user_id"], float("inf")), doc["at"].timestamp())
        return out
    finally:
        await client.close()


async def _receipts(db: Database, database: str, event_types: tuple[str, ...], since: float, users: set[str],
                    wait_s: float = 30.0) -> dict[str, float]:
    """:func:`_received`, once every user's ``received`` record is in (the audit trail is written after the SCIM
    write may already have happened), or after ``wait_s``: the latencies then count only the users it has."""
    deadline = time.monotonic() + wait_s
    while True:
        received = await _received(db, database, event_types, since)
        if users <= received.keys() or time.monotonic() > deadline:
            return received
        await asyncio.sleep(0.5)


async def _received(db: Database, database: str, event_types: tuple[str, ...], since: float) -> dict[str, float]:
    """Per Okta user: the time the poller received its event (its ``received`` audit record), after ``since``."""
    from datetime import UTC, datetime
    client: AsyncMongoClient = AsyncMongoClient(db.url, tz_aware=True)
    try:
        out: dict[str, float] = {}
        cursor = client[database].audit.find({"step": "received", "event_type": {"$in": list(event_types)},
                                              "at": {"$gte": datetime.fromtimestamp(since, UTC)}},
                                             {"okta_user_id": 1, "at": 1, "event_uuid": 1}, batch_size=10_000)
        async for doc in cursor:
            if doc.get("okta_user_id"):
                out[doc["okta_user_id"]] = min(out.get(doc["okta_user_id"], float("inf")), doc["at"].timestamp())
        return out
    finally:
        await client.close()


def _write_times(entries: list[dict], method: str) -> dict[str, float]:
    """Per Okta user (the body's externalId): when the target finished the first successful ``method``."""
    out: dict[str, float] = {}
    for e in entries:
        body = e.get("body")
        if e["method"] == method and isinstance(body, dict) and 200 <= (e.get("status") or 0) < 300:
            user = body.get("externalId")
            done = epoch(e["time"]) + (e.get("duration_ms") or 0) / 1000
            if user and user not in out:
                out[user] = done
    return out


# ------------------------------------------------------------------------------------------------------------- bulk

async def bulk(args, db: Database, sink: Sink, workdir: Path, *, tag: str, users: int, plan: str = "generous",
               keep: bool = False) -> dict[str, Any]:
    """Returns the figures; with ``keep`` the running stack and the user ids too (for paced and light)."""
    vhost = Vhost(tag).__enter__()
    database = f"bench_{tag}_{uuid.uuid4().hex[:6]}"
    stack = Stack(workdir / tag, rabbitmq_url=vhost.url, mongodb_url=db.url, mongodb_db=database, plan=plan,
                  extra_env=_env(args, sink))
    result: dict[str, Any] = {"plan": plan, "users": users, "max_concurrency": args.max_concurrency}
    try:
        stack.start_fixtures(["--log-entries", str(3 * users + 50_000)])
        async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
            app_id = await okta.create_app("Bench", "bench")
            t0 = time.time()
            ids = await _create_users(okta, users, tag)
            stack.write_connectors([connector(stack, app_id, args.max_concurrency)])
            stack.start_all()
            await until(lambda: _ready(stack), 120, "the initial sync of the empty app")
            stack.processes["queue_poller"].stop()  # the backlog builds up while the poller is away
            await _assign(okta, app_id, ids)
            result["setup_s"] = round(time.time() - t0, 1)
            writes = WriteLog(target, await target.last_seq())
            phase = Phase(stack, db, sink)
            await phase.start(okta)
            started = time.time()
            stack.restart("queue_poller")
            phase.marks.restarted("queue_poller", stack.processes["queue_poller"].proc.pid)
            created: dict[str, float] = {}

            async def all_created() -> bool:
                await writes.pull()
                created.update(_write_times(writes.entries, "POST"))
                return len(created) >= users
            await until(all_created, args.timeout, f"{users} accounts created", interval=1.0)
            await asyncio.sleep(1.0)  # the last audit records land
            figures = await phase.end(okta, users)
            received = await _received(db, database, ("application.user_membership.add",), started - 1)
            first, last = min(received.values()), max(created.values())
            latency = [created[u] - received[u] for u in created if u in received]
            result.update(figures, seconds=round(last - first, 2), changes_per_s=round(users / (last - first), 1),
                          latency_s=percentiles(latency), requests=len(writes.entries))
        if keep:
            result["_keep"] = (stack, vhost, ids, database)
            return result
    except Exception as exc:  # noqa: BLE001 - reported; the other scenarios still run
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["logs"] = stack.logs()[-3000:]
    stack.stop()
    vhost.__exit__(None, None, None)
    return result


async def _ready(stack: Stack) -> bool:
    return _log_says(stack, "translator", "full sync of") and _log_says(stack, "translator", "(initial)")


# ---------------------------------------------------------------------------------------------------- paced, light

async def paced(args, db: Database, sink: Sink, kept, *, rate: float, seconds: float, offset: int,
                label: str) -> dict[str, Any]:
    """``rate`` profile updates a second for ``seconds``, each to another user (from ``offset`` on)."""
    stack, _, ids, database = kept
    n = int(rate * seconds)
    users = ids[offset:offset + n]
    result: dict[str, Any] = {"offered_per_s": rate, "seconds": seconds, "changes": n}
    if len(users) < n:
        result["error"] = f"only {len(users)} provisioned users left for {n} updates"
        return result
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        writes = WriteLog(target, await target.last_seq())
        phase = Phase(stack, db, sink)
        await phase.start(okta)
        given = {u: f"{label[0].upper()}{i:06d}" for i, u in enumerate(users)}
        # the simulator makes the updates itself, one every 1/rate s (a client posting each one was the bound here)
        scheduled = await okta.paced_profile_updates([(u, {"firstName": given[u]}) for u in users], rate)
        started = scheduled["started_at"]

        async def offered() -> bool:
            return (await okta.paced_status())["finished_at"] is not None
        await until(offered, seconds + args.timeout, f"{n} updates offered")
        offered_until = (await okta.paced_status())["finished_at"]
        written: dict[str, float] = {}

        async def all_written() -> bool:
            await writes.pull()
            for e in writes.entries:
                body = e.get("body")
                if e["method"] == "PUT" and isinstance(body, dict) and 200 <= (e.get("status") or 0) < 300:
                    if (body.get("name") or {}).get("givenName") == given.get(body.get("externalId")):
                        written.setdefault(body["externalId"], epoch(e["time"]) + (e.get("duration_ms") or 0) / 1000)
            return len(written) >= n
        await until(all_written, args.timeout, f"{n} updates written")
        await asyncio.sleep(1.0)
        figures = await phase.end(okta, n)
        received = await _receipts(db, database, ("user.account.update_profile",), started - 1, set(given))
        published = {}
        for event in await okta.events():
            if event["eventType"] == "user.account.update_profile":
                user = next((t["id"] for t in event.get("target") or [] if t.get("type") == "User"), None)
                if user in given:
                    published[user] = epoch(event["published"])
        latency = [written[u] - received[u] for u in written if u in received]
        to_receipt = [received[u] - published[u] for u in received if u in published and u in given]
        planned = await _stepped(db, database, "translator", "planned", started - 1)
        result.update(figures, latency_s=percentiles(latency), published_to_receipt_s=percentiles(to_receipt),
                      receipt_to_planned_s=percentiles([planned[u] - received[u] for u in given
                                                        if u in planned and u in received]),
                      planned_to_write_s=percentiles([written[u] - planned[u] for u in written if u in planned]),
                      achieved_offer_per_s=round(n / max(offered_until - started, 1e-6), 1))
        if getattr(args, "raw", False):  # per change, seconds from the start: published, received, planned, written
            result["raw"] = [[round(t[u] - started, 4) if u in t else None for t in (published, received, planned,
                                                                                      written)] for u in users]
    return result


# ------------------------------------------------------------------------------------------------------- scale-out

async def scaleout(args, db: Database, sink: Sink, workdir: Path, *, tag: str = "scale") -> dict[str, Any]:
    apps, per_app, partitions = args.scale_apps, args.scale_users, args.scale_partitions
    result: dict[str, Any] = {"apps": apps, "max_concurrency": args.scale_concurrency,
                              "latency_ms": args.scale_latency_ms, "in_flight": args.scale_in_flight,
                              "partitions": partitions, "window_s": args.scale_window, "runs": {}}
    database = f"bench_{tag}_{uuid.uuid4().hex[:6]}"
    with Vhost(tag) as vhost:
        stack = Stack(workdir / tag, rabbitmq_url=vhost.url, mongodb_url=db.url, mongodb_db=database,
                      extra_env=_env(args, sink, DISPATCHER_MAX_IN_FLIGHT=str(args.scale_in_flight)))
        try:
            stack.start_fixtures(["--log-entries", "200000", "--latency-ms", str(args.scale_latency_ms)])
            async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
                entries = []
                for k in range(apps):
                    app_id = await okta.create_app(f"App {k}", f"app{k}")
                    ids = await _create_users(okta, per_app, f"{tag}{k}-")
                    await _assign(okta, app_id, ids)
                    entries.append(connector(stack, app_id, args.scale_concurrency, f"app{k}",
                                             f"{stack.target_url}/t/app{k}/scim/v2/"))
                (stack.workdir / "connectors.yaml").write_text(yaml.safe_dump(
                    {"apps": entries, "pools": {"default": {"partitions": partitions}}}, sort_keys=False))
                stack.start_one("audit_recorder")
                from tests.harness.devstack import wait_http
                wait_http(f"{stack.audit_url}/healthz", 60)
                stack.start_one("translator")
                stack.start_one("queue_poller")
                total = apps * per_app
                await until(lambda: _planned(db, database, total), args.timeout, f"{total} plans queued")
                for replicas in args.scale_replicas:
                    result["runs"][replicas] = await _scale_run(args, stack, target, replicas)
                    if result["runs"][replicas].get("error"):
                        break
                after = await target.inflight()  # the last run's shutdown
                result["peak_in_flight_per_app_after_runs"] = max(
                    (v["peak"] for k, v in after.items() if k.startswith("app")), default=0)
        finally:
            stack.stop()
    one = (result["runs"].get(1) or {}).get("requests_per_s")
    runs = list(result["runs"].values())
    result["peak_in_flight_per_app_at_any_time"] = max(
        [r.get(f, 0) or 0 for r in runs for f in ("peak_in_flight_per_app", "peak_in_flight_per_app_outside_window")]
        + [result.get("peak_in_flight_per_app_after_runs", 0) or 0], default=0)
    ceiling = args.scale_in_flight / (args.scale_latency_ms / 1000)
    result["ceiling_per_replica"] = ceiling
    for replicas, run in result["runs"].items():
        run["of_ceiling"] = round(run.get("requests_per_s", 0) / (ceiling * replicas), 3) if ceiling else None
        run["vs_one_replica"] = round(run.get("requests_per_s", 0) / one, 2) if one else None
    return result


async def _planned(db: Database, database: str, total: int) -> bool:
    client: AsyncMongoClient = AsyncMongoClient(db.url)
    try:
        return await client[database].audit.count_documents({"step": "planned", "service": "translator"}) >= total
    finally:
        await client.close()


async def _scale_run(args, stack: Stack, target: TargetAdmin, replicas: int) -> dict[str, Any]:
    names = [f"scim_dispatcher-r{replicas}-{i}" for i in range(replicas)]
    launched = time.time()
    for name in names:
        stack.start_one("scim_dispatcher", name, DISPATCHER_REPLICA=name)
    try:
        await until(lambda: _spread(stack, names), 180, f"{replicas} replicas owning their share")
        spread_s = time.time() - launched
        # the steady window: each replica holds permits for its in-flight limit (the apps' permits are shared out
        # over a few renewals once the replicas have registered their wants), and its pipeline is full
        await until(lambda: _permitted(stack, names, args.scale_in_flight), 30, "permits shared out")
        permitted_s = time.time() - launched
        await asyncio.sleep(2.0)
        # the peaks since the last reset: this run's start-up, hand-overs and the permits' sharing out, and the
        # previous run's shutdown (so every moment of the scenario is checked, not only the window)
        outside = await target.inflight()
        await target.reset_inflight()
        pids = {n: pid for n, pid in stack.pids().items() if n in names or n == "demo-target"}
        cpu0, idle0 = {n: cpu_seconds(pid) or 0.0 for n, pid in pids.items()}, machine_idle()
        seq0, t0 = await target.last_seq(), time.time()
        await asyncio.sleep(args.scale_window)
        t1 = time.time()
        cpu1, idle1 = {n: cpu_seconds(pid) or 0.0 for n, pid in pids.items()}, machine_idle()
        peaks = await target.inflight()
        writes = WriteLog(target, seq0)
        await writes.pull()
        started = [e for e in writes.entries if t0 <= epoch(e["time"]) < t1]
        per_app = {k: v["peak"] for k, v in peaks.items() if k.startswith("app")}
        return {"replicas": replicas, "requests": len(started),
                # from the start of the processes: partitions shared out, then permits too (the window starts 2 s later)
                "partitions_spread_s": round(spread_s, 1), "permits_spread_s": round(permitted_s, 1),
                "requests_per_s": round(len(started) / (t1 - t0), 1),
                "peak_in_flight_per_app": max(per_app.values(), default=0),
                "peak_in_flight_per_app_outside_window": max(
                    (v["peak"] for k, v in outside.items() if k.startswith("app")), default=0),
                "peak_in_flight_total": (peaks.get("*") or {}).get("peak"),
                # is the machine the bound? the dispatchers' and the target's share of a core, and the idle cores
                "dispatchers_cores": round(sum(cpu1[n] - cpu0[n] for n in names) / (t1 - t0), 2),
                "target_cores": round(sum(cpu1[n] - cpu0[n] for n in pids if n not in names) / (t1 - t0), 2),
                "idle_cores": round((idle1 - idle0) / (t1 - t0), 2)}
    except Exception as exc:  # noqa: BLE001
        return {"replicas": replicas, "error": f"{type(exc).__name__}: {exc}", "partitions": _owners(stack)}
    finally:
        for name in names:
            stack.processes[name].stop()  # SIGTERM: its partitions are released at once


async def _permitted(stack: Stack, names: list[str], each: int) -> bool:
    from pymongo import MongoClient
    with MongoClient(stack.mongodb_url) as client:
        doc = next((d for d in client[stack.mongodb_db].permits.find({}) if "|apps|" in d["_id"]), None)
    if not doc:
        return False
    held = {h.split("~")[0]: sum(v.get("held", {}).values()) for h, v in doc.get("holders", {}).items()}
    return all(held.get(n, 0) >= each for n in names)


def _owners(stack: Stack) -> list[Any]:
    from pymongo import MongoClient
    with MongoClient(stack.mongodb_url) as client:
        doc = client[stack.mongodb_db].partitions.find_one({}) or {}
    return [{"members": doc.get("members")}, *doc.get("leases", [])]


async def _spread(stack: Stack, names: list[str]) -> bool:
    """Every replica says it serves, and the partition table shows each of them owning partitions."""
    from pymongo import MongoClient
    with MongoClient(stack.mongodb_url) as client:
        doc = client[stack.mongodb_db].partitions.find_one({})
    if not doc:
        return False
    owners = [x.get("owner") for x in doc["leases"]]
    owners = [o.split("~")[0] if o else o for o in owners]  # a replica's name, then its process's suffix
    return all(owners.count(n) >= len(owners) // len(names) for n in names)


