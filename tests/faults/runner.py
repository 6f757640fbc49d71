"""The fault-injection scenario runner: a stream of mixed changes in the Okta simulator for several apps while
faults are injected, then the truth read back from the target over SCIM and from its request log.

To make order visible every user's profile updates are numbered in sequence and the number goes into
``profile.title``, which the connectors file maps to the SCIM ``title``.

* **lost**: an (app, user) or (app, group, member) whose final target state differs from Okta's;
* **duplicated**: more than one target account for one Okta user, or a member listed twice in a target group;
* **out of order**: the target's request log shows a user's title going back to an older number after a newer one
  was applied.

``python -m tests.faults.runner --duration 600`` (``make soak DURATION=600``) runs the long version and prints the
same table as the short one in ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import asyncio
import json
import random
import re
import shutil
import signal
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from faststream.rabbit import RabbitBroker
from pymongo import AsyncMongoClient

from demo_scim_target.admin_client import TargetAdmin
from okta_bridge.contracts import AppSyncRequested, SyncReason
from okta_bridge.stores.assignments import MongoAssignments
from okta_bridge.stores.partitions import MongoPartitions
from tests.harness.devstack import DevStack
from okta_bridge.topology import EVENTS_EXCHANGE, SYNC_ROUTING_KEY, TRANSLATOR_QUEUE, partition_of
from okta_simulator.admin_client import SimulatorAdmin
from tests.faults.nodes import ROOT, RabbitNode, SecantusNode

LATE_S = 5  # an Okta answer held back while a change is applied (the stale-listing and stale-filter probes)
# the translator's batches: the largest size it can be configured with (TranslatorSettings.batch_size, le=1000),
# and the size of the translator_burst fault's burst, so that the translator holds a batch of this size when killed
TRANSLATOR_BATCH_SIZE = 1000
LOCAL_DEADLINE_APP = "app1"  # max_concurrency 1 when that probe runs: one write holds the app's only permit
ALL_FAULTS = ("kill", "target_5xx", "target_429", "target_down", "okta_429", "mongo_restart", "rabbit_restart",
              "kill_dispatcher", "pause_dispatcher", "scale", "translator_burst")
BRIDGE = ("queue_poller", "translator", "audit_recorder")
BROKEN = {
    # the lookup before create: a create whose answer was lost is sent again
    "lookup_before_create": [("services/scim_dispatcher/handlers.py",
                              "        return await self._adopt(client, plan)\n",
                              "        return None  # BROKEN BUILD: no lookup before create\n")],
    # the version check: an older plan may overwrite a newer one
    "version_check": [("services/scim_dispatcher/handlers.py", "if link and link.applied_version >= plan.version:",
                       "if False:  # BROKEN BUILD: no version check"),
                      ("shared/okta_bridge/stores/links.py", '"applied_version": {"$lt": w.version},', "")],
    # a batched Okta read (a filtered listing, or a sync's page) is trusted although it is older than what an earlier
    # plan of the user was built from
    "batched_read_trust": [
        ("shared/okta_bridge/stores/assignments.py", '"built_max": {"$not": {"$gt": c.updated}}}',
         '"broken_build": {"$exists": False}}'),
        ("services/translator/planning.py", "if read.unusable or read.updated < row.user_built_max:", "if read.unusable:"),
        ("services/translator/planning.py", "if _updated(embedded) >= floor[w.user_id]:", "if True:"),
        ("services/translator/planning.py", "if u not in reads or reads[u].updated < floor.get(u, -1)]",
         "if u not in reads]"),
        ("services/translator/planning.py", "r.unusable is None and r.updated >= floor.get(u, -1)}",
         "r.unusable is None}"),
    ],
    # a replica that joins takes partitions other replicas still hold, without waiting for their release or expiry
    "lease_wait": [("shared/okta_bridge/partitions.py",
                    "free = [p for p, x in enumerate(leases) if x.owner is None or x.expires <= now]",
                    "free = [p for p, x in enumerate(leases) if x.owner != me]")],
    # an owner whose lease may have lapsed (it was paused past its local deadline) still starts writes
    "local_deadline": [
        ("services/scim_dispatcher/engine.py", "if lease is None or self.monotonic() >= lease.deadline:",
         "if lease is None:"),
        ("shared/okta_bridge/permits.py",
         "return min(self.held[resource], self.allowed[resource]) if self.monotonic() < self.deadline else 0",
         "return min(self.held[resource], self.allowed[resource])"),
        ("shared/okta_bridge/partitions.py", "for p in [p for p, deadline in self.held.items() if deadline <= now]:",
         "for p in []:"),
    ],
    # a batch acknowledged before its bulk write of the links
    "ack_before_write": [("services/scim_dispatcher/engine.py", "            async with self.audit.batch():\n"
                          "                await self._store_links(",
                          "            for item in items:  # BROKEN BUILD: acknowledged before the bulk write\n"
                          "                if not item.lost:\n"
                          "                    await item.delivery.ack()\n"
                          "            async with self.audit.batch():\n"
                          "                await self._store_links(")],
}
# deliberately broken builds whose probes share one stack: independent mechanisms, each probe on its own user
BROKEN["plans"] = BROKEN["version_check"] + BROKEN["batched_read_trust"] + BROKEN["lookup_before_create"]
BROKEN["partition_guards"] = BROKEN["lease_wait"] + BROKEN["local_deadline"] + BROKEN["ack_before_write"]


@dataclass
class Report:
    changes: int = 0
    applied: int = 0
    retried: int = 0
    held: int = 0
    dead_lettered: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    concurrent: list[str] = field(default_factory=list)  # two writes to one account in flight at the same time
    late_writes: list[str] = field(default_factory=list)  # writes started after their owner's local deadline
    dead_letters: list[str] = field(default_factory=list)  # their reasons, from the audit
    faults: Counter = field(default_factory=Counter)
    okta_calls: dict[str, int] = field(default_factory=dict)
    dispatchers_added: int = 0  # by the scale fault: each one added is removed (SIGTERM) later in the run
    dispatchers_removed: int = 0
    in_hand_at_kill: list[int] = field(default_factory=list)  # per translator_burst: its unacknowledged deliveries

    def about(self, login: str) -> list[str]:
        """Every problem found for one login (a probe's user)."""
        return [x for x in self.lost + self.duplicated + self.out_of_order + self.late_writes
                if x.startswith(login) or login in x]

    def table(self) -> str:
        rows = [("changes made", self.changes), ("applied", self.applied), ("retried", self.retried),
                ("held", self.held), ("dead-lettered", self.dead_lettered), ("lost", len(self.lost)),
                ("duplicated", len(self.duplicated)), ("out of order", len(self.out_of_order)),
                ("concurrent writes to one account", len(self.concurrent)),
                ("writes after the owner's deadline", len(self.late_writes)),
                ("dispatchers added", self.dispatchers_added), ("dispatchers removed", self.dispatchers_removed),
                ("translator: deliveries in hand at each kill",
                 ", ".join(map(str, self.in_hand_at_kill)) or "-")]
        rows += [(f"fault: {k}", v) for k, v in sorted(self.faults.items())]
        rows += [(f"okta calls: {k}", v) for k, v in sorted(self.okta_calls.items())]
        width = max(len(r[0]) for r in rows)
        lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
        for label, items in (("lost", self.lost), ("duplicated", self.duplicated), ("out of order", self.out_of_order),
                             ("concurrent", self.concurrent), ("late write", self.late_writes),
                             ("dead letter", self.dead_letters)):
            lines += [f"  {label}: {item}" for item in items[:10]]
        return "\n".join(lines)


@dataclass
class World:
    """What the runner did in Okta, to compare with the target at the end."""
    apps: dict[str, str] = field(default_factory=dict)  # app name -> app id
    users: dict[str, tuple[str, str]] = field(default_factory=dict)  # user id -> (app name, login)
    seq: dict[str, int] = field(default_factory=dict)  # user id -> last title number
    groups: dict[str, str] = field(default_factory=dict)  # app name -> pushed group id


class Runner:
    def __init__(self, workdir: Path, *, seed: int = 1, apps: int = 3, users_per_app: int = 6, dispatchers: int = 2,
                 faults: tuple[str, ...] = ALL_FAULTS, broken: str | None = None, idle_s: float = 75,
                 probes: tuple[str, ...] = ("reorder", "stale_listing"), target_quirks: tuple[str, ...] = (),
                 timeout_s: float = 3, log=print) -> None:
        self.workdir, self.rng = workdir, random.Random(seed)
        started = time.monotonic()
        self.log = lambda text: log(f"[{time.monotonic() - started:6.1f} s] {text}")
        self.n_apps, self.users_per_app, self.dispatchers = apps, users_per_app, dispatchers
        self.faults, self.broken, self.idle_s = faults, broken, idle_s
        self.probes, self.target_quirks = probes, target_quirks
        self.timeout_s = timeout_s  # every app's SCIM timeout: the partition leases' margin follows it
        # the dispatcher's partition lease: DISPATCHER_PARTITION_TTL_S (8), raised to the margin (timeout + 2) + 6
        self.lease_ttl_s = max(8.0, max(5.0, timeout_s + 2) + 6)
        self.world, self.report = World(), Report()
        self.probe_users: dict[str, str] = {}  # probe -> the login it watches
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._extra = 0  # dispatchers added during the run
        self._fault_lock = asyncio.Lock()  # held by one fault at a time (its part in the background included)
        self._background: set[asyncio.Task] = set()  # faults' parts still to come (a burst's, a scale's removal)
        self.rabbit = RabbitNode(workdir / "rabbit")
        self.mongo = SecantusNode(workdir / "mongo")
        self.stack: DevStack | None = None

    # --- set-up ----------------------------------------------------------------------------------------------------
    def _source(self) -> Path | None:
        if not self.broken:
            return None
        src = self.workdir / "broken-build"
        for part in ("shared", "services"):
            shutil.copytree(ROOT / part, src / part, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        for path, old, new in BROKEN[self.broken]:
            text = (src / path).read_text()
            assert old in text, f"broken build: {old!r} not found in {path}"
            (src / path).write_text(text.replace(old, new))
        return src

    async def start(self) -> None:
        self.rabbit.start()
        self.mongo.start()
        self.stack = DevStack(self.workdir / "stack", rabbitmq_url=self.rabbit.url, mongodb_url=self.mongo.url,
                              mongodb_db="faults", source_root=self._source(),
                              extra_env={"POLLER_IDLE_INTERVAL_S": "0.5", "POLLER_MIN_INTERVAL_S": "0.2",
                                         "POLLER_LEASE_TTL_S": "3", "DISPATCHER_PARTITION_TTL_S": "8",
                                         "DISPATCHER_GROUP_LEASE_TTL_S": "8", "DISPATCHER_PROBE_INTERVAL_S": "2",
                                         "TRANSLATOR_BATCH_SIZE": str(TRANSLATOR_BATCH_SIZE),
                                         "TRANSLATOR_BATCH_WAIT_MS": "100"})
        self.stack.start_fixtures([a for q in self.target_quirks for a in ("--quirk", q)])
        async with SimulatorAdmin(self.stack.okta_url) as okta:
            connectors = []
            for a in range(self.n_apps):
                name = f"app{a}"
                app_id = await okta.create_app(f"App {a}", name)
                self.world.apps[name] = app_id
                group = await okta.create_group(f"team-{name}")
                self.world.groups[name] = group
                for u in range(self.users_per_app):
                    login = f"u{u}.{name}@example.com"
                    user = await okta.create_user({"login": login, "email": login, "firstName": "U", "lastName": str(u),
                                                   "title": "000000"})
                    self.world.users[user] = (name, login)
                    self.world.seq[user] = 0
                    if u % 2 == 0:  # half assigned before the bridge starts (initial sync), half by the log
                        await okta.assign_user(app_id, user)
                connectors.append({
                    "okta_app_id": app_id, "name": name, "timeout_s": self.timeout_s,
                    "base_url": f"{self.stack.target_url}/scim/{'v2' if a % 2 else 'v1'}/",
                    "auth": {"type": "header", "value_env": "DEMO_TARGET_TOKEN", "value_prefix": "Bearer "},
                    "attribute_mappings": {"title": "profile.title"}, "push_groups": [f"team-{name}"],
                    "suspended": "deactivate",  # the truth below expects suspended users inactive
                    "guard": {"max_deactivations": None},  # random churn for hours: every deactivation is expected
                    # the local-deadline probe needs app0's only permit held by one write while another waits
                    "max_concurrency": 1 if name == LOCAL_DEADLINE_APP and "local_deadline" in self.probes else 4,
                    # the lease-wait probe's app (app0) writes without If-Match, as to a target without ETags: its
                    # one writer must come from partition ownership alone (with If-Match the target itself refuses
                    # the late write of a newcomer's race with a 412, which would hide a broken build)
                    **({"send_if_match": False} if name == "app0" and "lease_wait" in self.probes else {})})
        self.stack.write_connectors(connectors)
        self.stack.start_services(dispatchers=self.dispatchers)

    # --- the run ---------------------------------------------------------------------------------------------------
    async def run(self, duration_s: float) -> Report:
        try:
            await self.start()
            self.log("bridge started")
            if "reorder" in self.probes:
                await self._reorder_probe()
            if "lost_answer" in self.probes:
                await self._lost_answer_probe()
            if "stale_listing" in self.probes:
                await self._stale_listing_probe()
            if "stale_filter" in self.probes:
                await self._stale_filter_probe()
            if "ack_before_write" in self.probes:
                await self._ack_before_write_probe()
            if "lease_wait" in self.probes:
                await self._lease_wait_probe()
            if "local_deadline" in self.probes:
                await self._local_deadline_probe()
            self.log("probes done; changes and faults")
            stop = asyncio.Event()
            changes = asyncio.create_task(self._changes(stop))
            faults = asyncio.create_task(self._inject(stop))
            await asyncio.sleep(duration_s)
            stop.set()
            await asyncio.gather(changes, faults)
            await self._heal()
            self.log("faults healed; converging")
            await self._converge(idle_s=self.idle_s)
            await self._count()
            return self.report
        except BaseException:
            if self.stack:  # what each process said, for the failure's report
                self.log(self.stack.logs())
            raise
        finally:
            if self.stack:
                self.stack.stop()
            self.mongo.stop()
            self.rabbit.stop()

    async def _reorder_probe(self) -> None:
        """A deterministic chance to reorder, in every run: the first update's PUT is answered 500 (so its plan waits
        in a retry tier) and a second update follows once that PUT was refused. With the version check the retried
        older plan is skipped; without it, it overwrites the newer title (the broken-build test)."""
        assert self.stack
        user, login = self._probe_user("reorder", "app0", "u0.")
        async with SimulatorAdmin(self.stack.okta_url) as okta, TargetAdmin(self.stack.target_url) as target:
            account = await _wait_for(lambda: _account(target, login), 120, f"{login} provisioned")
            seen = await target.last_seq()
            await target.add_fault(500, method="PUT", path_regex=f"/Users/{account['id']}$", times=1)
            await self._apply(okta, "update", user, self.world.apps["app0"], self.world.groups["app0"])

            async def refused():
                return [r for r in await target.requests(since=seen) if r["method"] == "PUT" and r.get("status") == 500]
            await _wait_for(refused, 60, "the first update's PUT refused")
            await self._apply(okta, "update", user, self.world.apps["app0"], self.world.groups["app0"])
            self.report.changes += 2

    async def _lost_answer_probe(self) -> None:
        """A create whose answer is lost: the target writes the account after the bridge's timeout. The
        bridge's retry must look up before creating again; a target that does not enforce unique userNames (the
        ``no-unique-username`` quirk) shows a second POST as a second account."""
        assert self.stack
        user, login = self._probe_user("lost_answer", "app0", "u1.")
        async with SimulatorAdmin(self.stack.okta_url) as okta, TargetAdmin(self.stack.target_url) as target:
            # alone: nothing else in flight that the delayed POST could belong to
            await self._initial_provisioning(target, "app0")
            await _wait_for(lambda: _idle(target, 3.0), 120, "the target idle")
            await target.add_fault(None, method="POST", path_regex=r"/Users$", delay_s=self.timeout_s + 0.2, times=1)
            await okta.assign_user(self.world.apps["app0"], user)
            self.report.changes += 1
            await _wait_for(lambda: _account(target, login), 120, f"{login} created after a lost answer")

    async def _stale_listing_probe(self) -> None:
        """A full sync whose listing arrives late: Okta computes the page, the user's title changes and that change
        is planned and applied, then the page (with the old title) arrives and the sync plans from it. The sync's
        take is the newest, so a sync that trusted its listing would set the old title again (out of order, and
        lost until the next change); the fenced sync sees the take since its page was asked for and reads again."""
        assert self.stack
        user, login = self._probe_user("stale_listing", "app0", "u6.", "u0.")
        app_id = self.world.apps["app0"]
        async with SimulatorAdmin(self.stack.okta_url) as okta, TargetAdmin(self.stack.target_url) as target:
            title = lambda: f"{self.world.seq[user]:06d}"  # noqa: E731
            await _wait_for(lambda: _has_title(target, login, title()), 120, f"{login} at title {title()}")
            used = (await okta.stats())["faults"]["used"]
            await okta.inject("apps", None, 1, delay_s=LATE_S, path_regex=f"/apps/{app_id}/users$")
            async with RabbitBroker(self.rabbit.url) as broker:
                await broker.publish(AppSyncRequested(org=self.stack.okta_url, app_id=app_id,
                                                      reason=SyncReason.OPERATOR, sync_id=uuid.uuid4().hex),
                                     exchange=EVENTS_EXCHANGE, routing_key=SYNC_ROUTING_KEY, persist=True)

            async def page_computed_and_held():  # the late answer was taken by this app's listing, and is held
                return (await okta.stats())["faults"]["used"] > used
            await _wait_for(page_computed_and_held, 60, "the sync's page computed and held back")
            held = time.monotonic()
            await self._apply(okta, "update", user, app_id, self.world.groups["app0"])
            self.report.changes += 1
            await _wait_for(lambda: _has_title(target, login, title()), 60, f"{login} at title {title()}")
            if time.monotonic() - held > LATE_S:
                self.log("stale-listing probe: the change was applied after the late page arrived (no race this time)")
            await asyncio.sleep(LATE_S + 2)  # the late page arrives and the sync plans from it

    async def _stale_filter_probe(self) -> None:
        """A batched read that arrives late: a membership event's plan asks Okta for its user in a filtered listing,
        Okta computes the answer, the user's title changes and that change is planned by id and applied, then the
        answer (with the old title) arrives. Its lastUpdated is older than what the change's plan was built from:
        the translator reads the user again by id; a build that trusted it would set the old title again."""
        assert self.stack
        user, login = self._probe_user("stale_filter", "app0", "u2.")
        app_id = self.world.apps["app0"]
        async with SimulatorAdmin(self.stack.okta_url) as okta, TargetAdmin(self.stack.target_url) as target:
            title = lambda: f"{self.world.seq[user]:06d}"  # noqa: E731
            await _wait_for(lambda: _has_title(target, login, title()), 120, f"{login} at title {title()}")
            used = (await okta.stats())["faults"]["used"]
            await okta.inject("users", None, 1, delay_s=LATE_S, path_regex=r"/api/v1/users$")
            await okta.update_app_user_profile(app_id, user, {"probe": "stale-filter"})  # a membership event

            async def answer_computed_and_held():
                return (await okta.stats())["faults"]["used"] > used
            await _wait_for(answer_computed_and_held, 60, "the batched read's answer computed and held back")
            await self._apply(okta, "update", user, app_id, self.world.groups["app0"])
            self.report.changes += 1
            await _wait_for(lambda: _has_title(target, login, title()), 60, f"{login} at title {title()}")
            await asyncio.sleep(LATE_S + 2)  # the late answer arrives and its plan goes out

    # --- partitions: who owns a key ---------------------------------------------------------------------------------
    async def _pool_state(self):
        assert self.stack
        client: AsyncMongoClient = AsyncMongoClient(self.mongo.url)
        try:
            return await MongoPartitions(client.faults, self.stack.okta_url).read("default")
        finally:
            await client.close()

    async def _queue(self, queue: str) -> dict[str, int] | None:
        """The broker's count of ``queue``'s messages (ready and unacknowledged) and of those unacknowledged
        (delivered to a consumer, in its hands: ``unacked``); None if the broker does not answer."""
        vhost = urlsplit(self.rabbit.url).path[1:] or "/"
        listed = await asyncio.to_thread(self.rabbit._ctl, "list_queues", "-p", unquote(vhost), "name", "messages",
                                         "messages_unacknowledged", "--formatter", "json")
        rows = json.loads(listed.stdout or "[]") if listed.returncode == 0 else []
        row = next((r for r in rows if r.get("name") == queue), None)
        return None if row is None else {"messages": int(row.get("messages") or 0),
                                         "unacked": int(row.get("messages_unacknowledged") or 0)}

    async def _in_hand(self, queue: str) -> tuple[int, int] | None:
        """(unacknowledged deliveries, prefetch) of the channel that consumes ``queue``, as the broker's channel
        counts them when asked: exact, where the queue's own counts (``_queue``) are its statistics, emitted every
        few seconds. None if the broker does not answer or nothing consumes the queue."""
        vhost = unquote(urlsplit(self.rabbit.url).path[1:] or "/")
        listed = await asyncio.to_thread(self.rabbit._ctl, "list_consumers", "-p", vhost, "queue_name",
                                         "channel_pid", "prefetch_count", "--formatter", "json")
        consumer = next((r for r in (json.loads(listed.stdout or "[]") if listed.returncode == 0 else [])
                         if r.get("queue_name") == queue), None)
        if consumer is None:
            return None
        listed = await asyncio.to_thread(self.rabbit._ctl, "list_channels", "pid", "messages_unacknowledged",
                                         "--formatter", "json")
        channel = next((r for r in (json.loads(listed.stdout or "[]") if listed.returncode == 0 else [])
                        if r.get("pid") == consumer["channel_pid"]), None)
        return None if channel is None else (int(channel["messages_unacknowledged"]),
                                             int(consumer.get("prefetch_count") or 0))

    async def _unacked(self, queue: str, wanted: int) -> bool:
        counts = await self._queue(queue)
        return counts is not None and counts["unacked"] == wanted

    async def _owner_of(self, app_id: str, user_id: str) -> str:
        """The process (its name in the stack) whose replica holds the partition of (app, user)."""
        async def owner():
            state = await self._pool_state()
            lease = state.leases[partition_of(f"{app_id}|{user_id}", state.count)]
            return lease.owner.split("~")[0] if lease.owner and lease.expires > state.now else None
        return await _wait_for(owner, 60, f"an owner of {app_id}|{user_id}'s partition")

    def _probe_user(self, probe: str, app: str, *prefixes: str) -> tuple[str, str]:
        """The first seeded user of ``app`` whose login starts with one of ``prefixes`` (in their order)."""
        user = next(u for prefix in prefixes for u, (a, login) in self.world.users.items()
                    if a == app and login.startswith(prefix))
        self.probe_users[probe] = self.world.users[user][1]
        return user, self.world.users[user][1]

    async def _ack_before_write_probe(self) -> None:
        """A plan's write reached the target, then the database stopped answering before the batch's bulk write of
        the links, the dispatcher was killed and the database died (the write it had received is never carried out). An older plan of the user waits in a retry tier (its PUT answered 429 with a
        Retry-After of 12 s). Acknowledged only after the bulk write, the newer plan is delivered again and its link
        stored, and the older one is skipped by the version check when it comes back; a build that acknowledged the
        batch before the bulk write lost the newer plan's link, and the older plan sets the old title again."""
        assert self.stack
        user, login = self._probe_user("ack_before_write", "app0", "u4.")
        app_id = self.world.apps["app0"]
        async with SimulatorAdmin(self.stack.okta_url) as okta, TargetAdmin(self.stack.target_url) as target:
            title = lambda: f"{self.world.seq[user]:06d}"  # noqa: E731
            await _wait_for(lambda: _has_title(target, login, title()), 120, f"{login} at title {title()}")
            # nothing else in flight: another batch whose completion waits on the stopped database would hold up
            # this one's (completions go in order), and a broken build's early ack with it
            await _wait_for(lambda: _idle(target, 2.0), 120, "the target idle")
            account = await _account(target, login)
            owner = await self._owner_of(app_id, user)
            self.log(f"ack-before-write probe: {login}, partition owned by {owner}")
            path = f"/Users/{account['id']}$"
            seen = await target.last_seq()
            await target.add_fault(429, method="PUT", path_regex=path, headers={"Retry-After": "12"}, times=1)
            await self._apply(okta, "update", user, app_id, self.world.groups["app0"])

            async def put(since: int, status=None):
                return [r for r in await target.requests(since=since) if r["method"] == "PUT"
                        and r["path"].endswith(account["id"]) and (status is None or r.get("status") == status)]
            await _wait_for(lambda: put(seen, 429), 60, "the older plan's PUT answered 429")
            seen = await target.last_seq()
            await target.add_fault(None, method="PUT", path_regex=path, delay_s=1.5, times=1)
            await self._apply(okta, "update", user, app_id, self.world.groups["app0"])
            self.report.changes += 2
            await _wait_for(lambda: put(seen), 60, "the newer plan's PUT started")
            count = (await self._pool_state()).count  # read while the database answers
            queue = f"dispatcher.default.p{partition_of(f'{app_id}|{user}', count):03d}"
            self.mongo.process.send_signal(signal.SIGSTOP)  # a database that does not answer ...
            try:
                await _wait_for(lambda: put(seen, 200), 30, "the newer plan's PUT answered")
                await asyncio.sleep(1.0)  # the dispatcher completes the batch: its bulk write waits on the database
                # a build that acknowledges before the bulk write has acknowledged by now, unless an earlier batch's
                # completion held it up: wait (bounded) until the partition holds no unacknowledged message; a
                # correct build never gets there (its ack waits on the database) and goes on after the bound
                with contextlib.suppress(TimeoutError):
                    await _wait_for(lambda: self._unacked(queue, 0), 8, f"{queue} acknowledged")
                self.stack.processes[owner].signal(signal.SIGKILL)
                await asyncio.sleep(0.5)
            finally:  # ... and then dies: the bulk write it had received is never carried out
                await asyncio.to_thread(self.mongo.restart)
            self.stack.restart(owner)
            await asyncio.sleep(17)  # the older plan comes back from its tier (12 s and jitter) and is settled

    async def _local_deadline_probe(self) -> None:
        """A write waits for the app's only permit (``max_concurrency`` 1) while another write of the same replica
        holds it at the target (answered late, within the timeout); the replica is paused (SIGSTOP) past its lease,
        the database is stopped too, so nothing can tell the replica, and it resumes (SIGCONT). The permit comes
        free, but the replica's local deadline has passed: the waiting write must not start. A build that ignores
        the deadline sends it. (A request in flight across the pause is no probe: its timeout fires on resume.)"""
        assert self.stack
        app = LOCAL_DEADLINE_APP if LOCAL_DEADLINE_APP in self.world.apps else "app0"
        app_id, group = self.world.apps[app], self.world.groups[app]
        async with SimulatorAdmin(self.stack.okta_url) as okta, TargetAdmin(self.stack.target_url) as target:
            await self._initial_provisioning(target, app)
            await _wait_for(lambda: _idle(target, 2.0), 120, "the target idle")
            owners = {u: await self._owner_of(app_id, u) for u, (name, login) in self.world.users.items()
                      if name == app and _number(login) is not None}
            used = set(self.probe_users.values())

            def number(u: str) -> int:
                return _number(self.world.users[u][1])
            holders = [u for u in owners if number(u) % 2 == 0]  # provisioned from the start
            waiters = [u for u in owners if number(u) % 2 == 1 and self.world.users[u][1] not in used
                       and not await _account(target, self.world.users[u][1])]
            pair = next(((x, y) for x in holders for y in waiters if owners[x] == owners[y]), None)
            for attempt in range(64):  # none shares an owner: a new user whose key does
                if pair:
                    break
                new_login = f"u{100 + attempt}.{app}@example.com"
                new = await okta.create_user({"login": new_login, "email": new_login, "firstName": "D",
                                              "lastName": "L", "title": "000000"})
                self.world.users[new], self.world.seq[new] = (app, new_login), 0
                owners[new] = await self._owner_of(app_id, new)
                pair = next(((x, new) for x in holders if owners[x] == owners[new]), None)
            x, y = pair
            owner, login, x_login = owners[y], self.world.users[y][1], self.world.users[x][1]
            self.probe_users["local_deadline"] = login
            self.log(f"local-deadline probe: {x_login} holds the permit, {login} waits; both owned by {owner}")
            account = await _account(target, x_login)
            seen = await target.last_seq()
            await target.add_fault(None, method="PUT", path_regex=f"/Users/{account['id']}$",
                                   delay_s=self.timeout_s * 0.6, times=1)
            await self._apply(okta, "update", x, app_id, group)

            async def slow():
                return [r for r in await target.requests(since=seen) if r["method"] == "PUT" and r.get("fault")]
            await _wait_for(slow, 60, "the write holding the permit at the target")
            await okta.assign_user(app_id, y)
            self.report.changes += 2
            await asyncio.sleep(self.timeout_s * 0.3)  # the plan reaches its owner and waits for the permit
            mine = lambda r: login in json.dumps([r.get("body"), r.get("query")]).lower()  # noqa: E731
            if [r for r in await target.requests(since=seen) if mine(r)]:
                raise AssertionError(f"local-deadline probe: {login}'s requests did not wait for the permit")
            process = self.stack.processes[owner]
            process.signal(signal.SIGSTOP)
            await asyncio.sleep(self.lease_ttl_s + 1)  # past its lease on the database's clock and its local deadline
            self.mongo.process.send_signal(signal.SIGSTOP)
            try:
                resumed = await target.last_seq()
                process.signal(signal.SIGCONT)
                await asyncio.sleep(4)
                late = [r for r in await target.requests(since=resumed)
                        if r["method"] in ("POST", "PUT", "PATCH") and mine(r)]
            finally:
                self.mongo.process.send_signal(signal.SIGCONT)
            self.report.late_writes += [f"{login}: {r['method']} {r['path']} started after its owner's local "
                                        f"deadline" for r in late]
            self.log(f"local-deadline probe: {len(late)} write(s) after the deadline")
            await _wait_for(lambda: _account(target, login), 120, f"{login} created once the partition is owned")

    async def _initial_provisioning(self, target: TargetAdmin, app: str) -> None:
        for other, (name, other_login) in self.world.users.items():
            if name == app and _number(other_login) is not None and _number(other_login) % 2 == 0:
                await _wait_for(lambda l=other_login: _account(target, l), 120, f"{other_login} provisioned")

    async def _lease_wait_probe(self) -> None:
        """A replica joins while a write of a user is at the target (answered late, within the timeout). The
        partitions it gets are handed over only once their work is done; a build whose newcomer takes partitions
        others still hold applies the user's next change beside the write in flight, and the late write of the
        older title lands last."""
        assert self.stack
        app_id, group = self.world.apps["app0"], self.world.groups["app0"]
        joiner = f"scim_dispatcher-{len([n for n in self.stack.processes if n.startswith('scim_dispatcher')])}"
        state = await self._pool_state()
        # members rank by name (``process~suffix``); the newcomer's suffix is unknown, its process name is not
        names = sorted({m.split("~")[0] + "~" for m, e in state.members.items() if e > state.now} | {joiner + "~"})
        n, index = len(names), names.index(joiner + "~")
        async with SimulatorAdmin(self.stack.okta_url) as okta, TargetAdmin(self.stack.target_url) as target:
            for attempt in range(64):  # a user whose key is in a partition the newcomer would take first
                login = f"lease{attempt}.app0@example.com"
                user = await okta.create_user({"login": login, "email": login, "firstName": "L", "lastName": "W",
                                               "title": "000000"})
                if partition_of(f"{app_id}|{user}", state.count) % n == index:
                    break
            self.world.users[user], self.world.seq[user] = ("app0", login), 0
            self.probe_users["lease_wait"] = login
            await okta.assign_user(app_id, user)
            self.report.changes += 1
            account = await _wait_for(lambda: _account(target, login), 120, f"{login} provisioned")
            owner = await self._owner_of(app_id, user)
            self.log(f"lease-wait probe: {login}, partition owned by {owner}, {joiner} joins")
            seen = await target.last_seq()
            await target.add_fault(None, method="PUT", path_regex=f"/Users/{account['id']}$",
                                   delay_s=self.timeout_s * 0.9, times=1)
            await self._apply(okta, "update", user, app_id, group)

            async def put():
                return [r for r in await target.requests(since=seen) if r["method"] == "PUT" and r.get("fault")]
            await _wait_for(put, 60, "the slow write at the target")
            slow_since = time.monotonic()
            self.stack.start_service("scim_dispatcher", joiner)
            self._extra += 1

            async def joined():
                state = await self._pool_state()
                lease = state.leases[partition_of(f"{app_id}|{user}", state.count)]
                return lease.owner and lease.owner.split("~")[0] == joiner
            try:
                await _wait_for(joined, 6, f"{joiner} owning {login}'s partition")
            except TimeoutError:
                self.log(f"lease-wait probe: {login}'s partition stayed with {owner}")
            await asyncio.sleep(2.5)  # the old owner's next renewal
            self.log(f"lease-wait probe: the next change {time.monotonic() - slow_since:.1f} s into the slow write")
            await self._apply(okta, "update", user, app_id, group)
            self.report.changes += 2
            await asyncio.sleep(self.timeout_s)  # the slow write lands

    async def _changes(self, stop: asyncio.Event) -> None:
        assert self.stack
        async with SimulatorAdmin(self.stack.okta_url) as okta:
            while not stop.is_set():
                user = self.rng.choice(list(self.world.users))
                app_name, _ = self.world.users[user]
                app_id, group = self.world.apps[app_name], self.world.groups[app_name]
                op = self.rng.choices(["update", "update", "update", "deactivate", "reactivate", "activate",
                                       "suspend", "unsuspend", "assign", "unassign", "join", "leave"])[0]
                try:
                    await self._apply(okta, op, user, app_id, group)
                    self.report.changes += 1
                except httpx.HTTPStatusError:
                    pass  # e.g. suspending a deactivated user: Okta refuses, nothing changed
                await asyncio.sleep(self.rng.uniform(0.05, 0.3))

    async def _apply(self, okta: SimulatorAdmin, op: str, user: str, app_id: str, group: str) -> None:
        async with self._locks[user]:  # one change of a user at a time: the title numbers follow Okta's order
            await self._apply_one(okta, op, user, app_id, group)

    async def _apply_one(self, okta: SimulatorAdmin, op: str, user: str, app_id: str, group: str) -> None:
        if op == "update":
            self.world.seq[user] += 1
            await okta.update_profile(user, {"title": f"{self.world.seq[user]:06d}"})
        elif op in ("deactivate", "reactivate", "activate", "suspend", "unsuspend"):
            await okta.lifecycle(user, op)
        elif op == "assign":
            await okta.assign_user(app_id, user)
        elif op == "unassign":
            await okta.unassign_user(app_id, user)
        elif op == "join":
            await okta.add_group_member(group, user)
        elif op == "leave":
            await okta.remove_group_member(group, user)

    async def _inject(self, stop: asyncio.Event) -> None:
        assert self.stack
        async with SimulatorAdmin(self.stack.okta_url) as okta, TargetAdmin(self.stack.target_url) as target:
            first = self.rng.sample(self.faults, len(self.faults))  # every kind once, then at random
            while not stop.is_set():
                await asyncio.sleep(self.rng.uniform(2, 5))
                if stop.is_set() or not self.faults:
                    break
                fault = first.pop(0) if first else self.rng.choice(self.faults)
                self.report.faults[fault] += 1
                self.log(f"fault: {fault}")
                async with self._fault_lock:  # a part in the background waits for the fault under way, and the
                    await self._fault(fault, stop, okta, target)  # next fault for it
            # every dispatcher a scale fault added is removed within the run, every burst over, before the faults are
            # healed
            await asyncio.gather(*self._background)

    def _later(self, work) -> None:
        """A fault's part that goes on in the background: while the runner waits for the next fault, which starts
        after it (it holds the faults' lock, asked for before the next fault asks)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _fault(self, fault: str, stop: asyncio.Event, okta: SimulatorAdmin, target: TargetAdmin) -> None:
        assert self.stack
        if fault == "kill":
            names = [n for n in self.stack.processes if n.startswith((*BRIDGE, "scim_dispatcher"))]
            name = self.rng.choice(names)
            self.stack.processes[name].signal(signal.SIGKILL)
            await asyncio.sleep(self.rng.uniform(0.2, 2))
            self.stack.restart(name)
        elif fault == "target_5xx":
            await target.add_fault(500, method=self.rng.choice(["PUT", "POST", "PATCH", "GET"]), times=3)
        elif fault == "target_429":
            await target.add_fault(429, headers={"Retry-After": "1"}, times=3)
        elif fault == "target_down":
            await target.add_fault(503, times=None)
            await asyncio.sleep(self.rng.uniform(2, 6))
            await target.clear_faults()
        elif fault == "okta_429":
            await okta.inject("*", 429, 3)
        elif fault == "mongo_restart":
            await asyncio.to_thread(self.mongo.restart)
        elif fault == "rabbit_restart":
            await asyncio.to_thread(self.rabbit.restart)
        elif fault == "kill_dispatcher":  # one that owns partitions, killed at once
            name = await self._an_owner()
            self.stack.processes[name].signal(signal.SIGKILL)
            await asyncio.sleep(self.rng.uniform(0.2, 2))
            self.stack.restart(name)
        elif fault == "pause_dispatcher":  # an owner paused past its lease, then resumed
            name = await self._an_owner()
            self.stack.processes[name].signal(signal.SIGSTOP)
            await asyncio.sleep(self.lease_ttl_s + 2)
            self.stack.processes[name].signal(signal.SIGCONT)
        elif fault == "scale":  # a dispatcher added; removed (SIGTERM) later in the run, while other faults go on
            self._extra += 1
            name = f"scim_dispatcher-x{self._extra}"
            self.stack.start_service("scim_dispatcher", name)
            self.report.dispatchers_added += 1
            self._later(self._remove_later(name, stop))
        elif fault == "translator_burst":  # waiting for the poller mostly: in the background
            self._later(self._translator_burst(okta))

    async def _remove_later(self, name: str, stop: asyncio.Event) -> None:
        """A dispatcher the scale fault added is removed (SIGTERM: it hands its partitions over and stops) once it
        has owned partitions for a moment, or (that not within a lease and its renewals) anyway; at once when the
        faults stop."""
        async def owns():
            if stop.is_set():
                return True
            state = await self._pool_state()
            return any(x.owner and x.owner.split("~")[0] == name and x.expires > state.now for x in state.leases)
        try:
            await _wait_for(owns, self.lease_ttl_s + 6, f"{name} owning partitions")
        except TimeoutError:
            self.log(f"scale: {name} owned no partition before its removal")
        except Exception as exc:  # noqa: BLE001 - the database restarting (another fault): removed all the same
            self.log(f"scale: {name}'s partitions could not be read ({exc!r})")
        if not stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.5, 3))  # it writes as an owner for a moment
        async with self._fault_lock:  # not while a fault has chosen it (to kill, pause or restart it)
            process = self.stack.processes.pop(name)
            alive = process.alive()
            await asyncio.to_thread(process.stop)  # SIGTERM; SIGKILL only after 20 s
        if alive:
            self.report.dispatchers_removed += 1
            self.log(f"scale: {name} removed (SIGTERM)")
        else:
            self.log(f"scale: {name} was not running when it was to be removed")

    async def _translator_burst(self, okta: SimulatorAdmin) -> None:
        async with self._fault_lock:
            await self._burst(okta)

    async def _burst(self, okta: SimulatorAdmin) -> None:
        """A burst of ``TRANSLATOR_BATCH_SIZE`` changes (the largest batch size the translator can be configured
        with, and the one this runner gives it) of users the bridge follows (each change an event the poller
        publishes), taken by the translator as one batch, and the translator killed (SIGKILL) while the batch is in
        hand: being planned, perhaps partly published, not acknowledged.

        The translator is paused (SIGSTOP) while the burst is made and published by the poller, so that the burst is
        in its queue at once (taken as it trickles in, it would make batches of what arrived within the batch wait);
        the broker delivers it up to the prefetch (twice the batch size). Resumed, the translator takes the batch and
        plans it; as soon as its read of the users in Okta is seen it is paused again (a batch of 1000 is planned and
        acknowledged within about a second), its channel's count of unacknowledged deliveries is read from the broker
        (paused, it acknowledges nothing more: that is what it holds at the kill), and it is SIGKILLed. The burst
        costs one HTTP request (the simulator makes the updates itself, at the highest rate it allows; a request each
        would take about 10 s on a 2-core machine). The full size fits the run's time box: on a 2-core machine the
        poller publishes the page of 1000 within 2 s, the whole fault takes about 5 s, and it goes on in the
        background while the runner waits for the next fault, so the run's faults come hardly later."""
        assert self.stack
        translator = self.stack.processes["translator"]

        async def ready():  # consuming (say, restarted by an earlier fault and not yet connected)
            async with httpx.AsyncClient(timeout=2) as http:
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get(self.stack.metrics_url("translator", "/readyz"))).status_code == 200
            return False
        with contextlib.suppress(TimeoutError):
            await _wait_for(ready, 30, "the translator ready")
        began = time.monotonic()
        translator.signal(signal.SIGSTOP)
        try:
            before = await self._in_hand(TRANSLATOR_QUEUE.name)  # paused, it acknowledges none of them meanwhile
            users = await self._followed_users()
            per_user = Counter(users[i % len(users)] for i in range(TRANSLATOR_BATCH_SIZE))
            locks = [self._locks[u] for u in per_user]
            for lock in locks:  # no other change of these users meanwhile: the title numbers follow Okta's order
                await lock.acquire()
            try:
                updates = []
                for round_ in range(max(per_user.values())):
                    for u, n in per_user.items():
                        if round_ < n:
                            self.world.seq[u] += 1
                            updates.append((u, {"title": f"{self.world.seq[u]:06d}"}))
                await okta.paced_profile_updates(updates, rate_per_s=10_000)
                await _wait_for(lambda: self._paced_done(okta), 60, "the burst made in Okta")
            finally:
                for lock in locks:
                    lock.release()
            self.report.changes += len(updates)

            async def published():  # the poller published the burst, the broker delivered it to the paused translator
                hand = await self._in_hand(TRANSLATOR_QUEUE.name)  # (up to its prefetch, twice the batch size)
                return bool(hand) and hand[0] >= min((before or (0, 0))[0] + len(updates), hand[1])
            try:
                await _wait_for(published, 30, f"{len(updates)} deliveries in the translator's hands")
            except TimeoutError:
                self.log(f"translator burst: fewer than {len(updates)} deliveries in its hands after 30 s")
            calls, hand = await self._okta_user_reads(okta), None
            self.log(f"translator burst: {len(updates)} changes of {len(per_user)} users published in "
                     f"{time.monotonic() - began:.1f} s; the translator resumed")
        finally:
            translator.signal(signal.SIGCONT)
        try:
            async def planning():  # the batch is planned: its read of the users in Okta has started (the kill comes
                return await self._okta_user_reads(okta) > calls  # at once: a batch is planned in about a second)
            try:
                await _wait_for(planning, 3, "the translator's batch planned", interval=0.02)
            except TimeoutError:  # say, waiting for Okta permits that killed translators hold until they lapse
                self.log("translator burst: no Okta read of the batch within 3 s; killed while it waits")
            translator.signal(signal.SIGSTOP)  # nothing more acknowledged: what it holds now, it holds at the kill
            hand = await self._in_hand(TRANSLATOR_QUEUE.name)
        finally:
            translator.signal(signal.SIGKILL)  # (delivered to a stopped process too)
        held = hand[0] if hand else -1
        self.report.in_hand_at_kill.append(held)
        self.log(f"translator burst: killed with {held} deliveries in hand, {time.monotonic() - began:.1f} s in")
        await asyncio.sleep(0.5)
        self.stack.restart("translator")

    async def _followed_users(self) -> list[str]:
        """The seeded users whose changes the poller publishes (``user.*`` events): those the bridge has an
        assignment row of, for one of the apps. Read while the translator (which writes those rows) is paused, the
        list holds until the burst is published."""
        assert self.stack
        seeded = [u for u, (_, login) in self.world.users.items() if _number(login) is not None]
        client: AsyncMongoClient = AsyncMongoClient(self.mongo.url)
        try:
            rows = MongoAssignments(client.faults, self.stack.okta_url)
            followed = await rows.users_with_assignments(seeded, list(self.world.apps.values()))
        finally:
            await client.close()
        return [u for u in seeded if u in followed] or seeded

    @staticmethod
    async def _paced_done(okta: SimulatorAdmin) -> bool:
        status = await okta.paced_status()
        return not status["running"] and status["done"] >= status["total"]

    @staticmethod
    async def _okta_user_reads(okta: SimulatorAdmin) -> int:
        """Okta's calls to read users (a filtered listing or one by id): the translator's reads as it plans."""
        calls = (await okta.stats()).get("callsByBucket", {})
        return calls.get("users", 0) + calls.get("user", 0)

    async def _an_owner(self) -> str:
        state = await self._pool_state()
        owners = sorted({x.owner.split("~")[0] for x in state.leases if x.owner and x.expires > state.now}
                        & {n for n, p in self.stack.processes.items() if p.alive()})
        return self.rng.choice(owners) if owners else self.rng.choice(
            [n for n in self.stack.processes if n.startswith("scim_dispatcher")])

    async def _heal(self) -> None:
        assert self.stack
        async with SimulatorAdmin(self.stack.okta_url) as okta, TargetAdmin(self.stack.target_url) as target:
            await target.clear_faults()
            await okta.clear_faults()
        for name, process in self.stack.processes.items():
            if not process.alive():
                self.log(f"{name} was not running after the faults: restarted")
                self.stack.restart(name)

    # --- the truth -------------------------------------------------------------------------------------------------
    async def _expected(self) -> tuple[dict[str, dict], dict[str, set[str]]]:
        """Per login: {"active": bool | None (no account expected either way), "title": str}; per group: logins."""
        assert self.stack
        users: dict[str, dict] = {}
        groups: dict[str, set[str]] = {}
        async with httpx.AsyncClient(headers={"Authorization": f"SSWS {self.stack.token}"}) as http:
            base = self.stack.okta_url
            for app_name, app_id in self.world.apps.items():
                assigned = {u["id"] for page in await _pages(http, f"{base}/api/v1/apps/{app_id}/users") for u in page}
                for user_id, (name, login) in self.world.users.items():
                    if name != app_name:
                        continue
                    status = (await http.get(f"{base}/api/v1/users/{user_id}")).json()["status"]
                    title = f"{self.world.seq[user_id]:06d}"
                    if user_id in assigned and status == "ACTIVE":
                        users[login] = {"active": True, "title": title}
                    elif user_id in assigned and status in ("STAGED", "PROVISIONED"):
                        users[login] = {"active": None, "title": None}  # push_pending_users is off: nothing
                    else:
                        users[login] = {"active": False, "title": None}  # inactive if it exists
                members = {u["id"] for page in await _pages(http, f"{base}/api/v1/groups/"
                                                                    f"{self.world.groups[app_name]}/users")
                           for u in page}
                groups[f"team-{app_name}"] = {self.world.users[m][1] for m in members}
        return users, groups

    async def _actual(self) -> tuple[dict[str, list[dict]], dict[str, list[str]]]:
        assert self.stack
        async with TargetAdmin(self.stack.target_url) as target:
            accounts: dict[str, list[dict]] = defaultdict(list)
            by_id = {}
            for u in await target.users():
                accounts[u["userName"].lower()].append(u)
                by_id[u["id"]] = u["userName"].lower()
            groups = {g["displayName"]: [by_id.get(m["value"], m["value"]) for m in g.get("members") or []]
                      for g in await target.groups()}
        return accounts, groups

    def _differences(self, expected_users, expected_groups, accounts, groups) -> list[str]:
        lost = []
        for login, want in expected_users.items():
            found = accounts.get(login, [])
            if want["active"] is True:
                if not found or found[0].get("active") is not True or found[0].get("title") != want["title"]:
                    got = found[0] if found else None
                    lost.append(f"{login}: want active title {want['title']}, target has "
                                f"{(got or {}).get('active')} {(got or {}).get('title')}")
            elif want["active"] is False and found and found[0].get("active") is not False:
                lost.append(f"{login}: want inactive, target has it active")
        for name, members in expected_groups.items():
            # only members provisioned in the app are pushed: those the target has an account for
            want = {m for m in members if m in accounts}
            got = set(groups.get(name, []))
            if got != want:
                lost.append(f"group {name}: missing {sorted(want - got)[:3]}, extra {sorted(got - want)[:3]}")
        return lost

    async def _converge(self, timeout_s: float = 420, idle_s: float = 75) -> None:
        """Until the target equals Okta, or nothing has reached the target for ``idle_s`` (longer than the 60 s
        retry tier, the poller's backoff and the circuit's probes), or ``timeout_s``."""
        assert self.stack
        deadline = time.monotonic() + timeout_s
        lost: list[str] = []
        last_seq, idle_since = -1, time.monotonic()
        async with TargetAdmin(self.stack.target_url) as target:
            while time.monotonic() < deadline:
                expected_users, expected_groups = await self._expected()
                accounts, groups = await self._actual()
                lost = self._differences(expected_users, expected_groups, accounts, groups)
                if not lost:
                    break
                seq = await target.last_seq()
                if seq != last_seq:
                    last_seq, idle_since = seq, time.monotonic()
                elif time.monotonic() - idle_since > idle_s:
                    break
                await asyncio.sleep(3)
        self.report.lost = lost
        accounts, groups = await self._actual()
        self.report.duplicated = [f"{login}: {len(a)} accounts" for login, a in accounts.items() if len(a) > 1]
        self.report.duplicated += [f"group {name}: {m} listed twice" for name, members in groups.items()
                                   for m, n in Counter(members).items() if n > 1]

    async def _count(self) -> None:
        assert self.stack
        async with TargetAdmin(self.stack.target_url) as target, SimulatorAdmin(self.stack.okta_url) as okta:
            log = await target.requests()
            self.report.okta_calls = (await okta.stats()).get("callsByBucket", {})
        applied: dict[str, list[int]] = defaultdict(list)
        for r in log:
            body = r.get("body")
            if r["method"] in ("POST", "PUT") and "/Users" in r["path"] and isinstance(body, dict) \
                    and 200 <= (r.get("status") or 0) < 300 and str(body.get("title", "")).isdigit():
                applied[str(body.get("userName", "")).lower()].append(int(body["title"]))
        for login, titles in applied.items():
            for before, after in zip(titles, titles[1:]):
                if after < before:
                    self.report.out_of_order.append(f"{login}: title {after:06d} applied after {before:06d}")
        self.report.concurrent = _overlapping_writes(log, self.timeout_s)
        client: AsyncMongoClient = AsyncMongoClient(self.mongo.url)
        try:
            steps = {d["_id"]: d["n"] async for d in await client.faults.audit.aggregate(
                [{"$match": {"service": "scim-dispatcher"}}, {"$group": {"_id": "$step", "n": {"$sum": 1}}}])}
            self.report.dead_letters = [
                f"{d.get('app_id')} {d.get('okta_user_id') or d.get('okta_group_id')} {d.get('event_type')} "
                f"{d.get('scim_method') or ''} {d.get('scim_status') or ''}: {d.get('detail')}"
                async for d in client.faults.audit.find(
                    {"service": "scim-dispatcher", "step": "dead_lettered"})]
        finally:
            await client.close()
        self.report.applied, self.report.retried = steps.get("applied", 0), steps.get("retried", 0)
        self.report.held, self.report.dead_lettered = steps.get("held", 0), steps.get("dead_lettered", 0)


def _number(login: str) -> int | None:
    """A seeded user's number (``u3.app0@…`` -> 3); None for a user a probe created."""
    found = re.match(r"u(\d+)\.", login)
    return int(found.group(1)) if found else None


def _overlapping_writes(log: list[dict], timeout_s: float) -> list[str]:
    """Writes to one account (``/Users/{id}``) whose time at the target overlaps: two writers at once.

    A request's time is the target's own: from its arrival (``time``, once its body was read) to the end of its
    answer (``duration_ms`` on the target's monotonic clock), a fault's delay included. Requests a fault delayed or
    answered are judged too: the delay is spent inside that span, before the write is carried out (or refused), so
    the span is exactly when the request was in flight at the target; a second write arriving within it is a second
    writer while the first one's client was still waiting for its answer, the overlap a slow write would hide.

    Only what lies beyond the client's total timeout (``timeout_s``) is not judged: the client has given up by then
    (its timer starts before the arrival, by the connection's wait and the send: milliseconds here), the request
    is an answer lost, no longer a write in flight the bridge owns (its owner settles it as a timeout and may hand
    the partition over, and a new owner may write while the target still works on the abandoned request). The
    span is cut there; the runner's delays on writes stay below the timeout, so none of its own faults is cut."""
    from datetime import datetime

    spans: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for r in log:
        parts = r["path"].rstrip("/").split("/")
        if r["method"] in ("PUT", "PATCH", "DELETE") and len(parts) >= 2 and parts[-2] == "Users" \
                and r.get("duration_ms") is not None:
            start = datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp()
            spans[parts[-1]].append((start, start + min(r["duration_ms"] / 1000, timeout_s), r["seq"]))
    out = []
    for account, items in spans.items():
        items.sort()
        end, last = float("-inf"), 0  # the latest end so far, and its request: a slow one may span several
        for start, finish, seq in items:
            if start < end - 0.001:  # the log's times are to the millisecond
                out.append(f"account {account}: requests {last} and {seq} overlap")
            if finish > end:
                end, last = finish, seq
    return out


async def _idle(target: TargetAdmin, seconds: float) -> bool:
    before = await target.last_seq()
    await asyncio.sleep(seconds)
    return await target.last_seq() == before


async def _account(target: TargetAdmin, login: str) -> dict | None:
    return next((u for u in await target.users() if u["userName"].lower() == login), None)


async def _has_title(target: TargetAdmin, login: str, title: str) -> bool:
    account = await _account(target, login)
    return bool(account and account.get("active") is True and account.get("title") == title)


async def _wait_for(check, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout}s")


async def _pages(http: httpx.AsyncClient, url: str) -> list[list[dict[str, Any]]]:
    pages, next_url = [], url + "?limit=200"
    while next_url:
        response = await http.get(next_url)
        response.raise_for_status()
        pages.append(response.json())
        next_url = response.links.get("next", {}).get("url") if response.json() else None
    return pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--apps", type=int, default=3)
    parser.add_argument("--users-per-app", type=int, default=8)
    parser.add_argument("--dispatchers", type=int, default=2)
    parser.add_argument("--faults", default=",".join(ALL_FAULTS))
    parser.add_argument("--workdir", default=str(ROOT / ".run" / "soak"))
    args = parser.parse_args()
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    runner = Runner(workdir, seed=args.seed, apps=args.apps, users_per_app=args.users_per_app,
                    dispatchers=args.dispatchers, faults=tuple(f for f in args.faults.split(",") if f))
    report = asyncio.run(runner.run(args.duration))
    print(report.table())
    print(json.dumps({"lost": len(report.lost), "duplicated": len(report.duplicated),
                      "out_of_order": len(report.out_of_order)}))
    raise SystemExit(1 if report.lost or report.duplicated or report.out_of_order else 0)


if __name__ == "__main__":
    main()
