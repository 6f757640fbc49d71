"""The **groups** scenario: Push Groups on a fresh stack (simulator plan ``generous``).

One big group of 5,000 members and 50 team groups of 100 (``--group-scale`` scales the sizes), every member assigned
to the app and provisioned first through the bridge's initial full sync (setup, not measured). Then the services that
read the connectors file (translator, scim-dispatcher, queue-poller) are restarted with ``push_groups`` naming every
group, as an operator starts pushing; measured from that restart until the target's groups, read back over SCIM
(``GET /Groups`` paged, a user agent of its own, left out of the counts), have exactly Okta's members.

The simulator has no bulk endpoint for group members: they are added one call each, 16 at a time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from pymongo import AsyncMongoClient
from rich.console import Console

from tests.bench.infra import (
    Database,
    Sink,
    Stack,
    Vhost,
    WriteLog,
    connector,
    epoch,
    percentiles,
    until,
)
from tests.bench.scenarios import Phase, _assign, _create_users, _env

GROUP_BIG, GROUP_TEAM, GROUP_TEAMS = 5000, 100, 50
VERIFY_UA = "okta-bridge-bench-verify"  # the bench's own SCIM reads, left out of the request counts
ADMIN_CONCURRENCY = 16  # concurrent simulator calls adding group members (no bulk endpoint for them)
RESTARTED = ("translator", "scim_dispatcher", "queue_poller")  # the services that read the connectors file
PROGRESS_S = 10.0

console = Console(width=140)


def group_sizes(scale: float) -> tuple[int, int, int]:
    """(members of the big group, members of each team group, team groups) at ``--group-scale``."""
    return max(1, round(GROUP_BIG * scale)), max(1, round(GROUP_TEAM * scale)), GROUP_TEAMS


class ScimGroups:
    """The target's groups read over its own SCIM API, as any SCIM client would (``GET /Groups`` paged), with a user
    agent of its own so that these reads are told apart from the bridge's in the request log."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=60,
                                      headers={"Authorization": f"Bearer {token}", "User-Agent": VERIFY_UA})
        self.reads = 0
        self.ids: dict[str, str] = {}  # displayName -> target group id, as last read

    async def groups(self) -> dict[str, list[str]]:
        """displayName -> member values (target user ids)."""
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


def request_kind(entry: dict) -> str:
    method, path, query = entry.get("method"), (entry.get("path") or "").rstrip("/"), entry.get("query") or ""
    for kind in ("Groups", "Users"):
        if f"/{kind}" in path:
            if path.endswith(f"/{kind}"):
                return f"{method} /{kind}" + ("?filter" if "filter" in query else "")
            return f"{method} /{kind}/{{id}}"
    return f"{method} other"


def patch_members(body: Any) -> int:
    """Members a group PATCH carries: SCIM 2.0 ``add`` a list, ``remove`` one op per member; SCIM 1.1 ``members``."""
    if not isinstance(body, dict):
        return 0
    if isinstance(body.get("Operations"), list):
        return sum(len(op["value"]) if isinstance(op.get("value"), list) else 1 for op in body["Operations"]
                   if isinstance(op, dict) and str(op.get("path", "")).startswith("members"))
    return len(body.get("members") or [])


async def _limited(calls: list, limit: int) -> None:
    slots = asyncio.Semaphore(limit)

    async def one(make) -> None:
        async with slots:
            await make()

    await asyncio.gather(*(one(make) for make in calls))


def _dead(stack: Stack) -> None:
    for name, process in stack.processes.items():
        if not process.alive():
            raise RuntimeError(f"{name} exited: see {process.log_path}")


async def _group_audit(db: Database, database: str, since: float) -> dict[str, Any]:
    """From the audit trail: when the translator planned each group push, when the dispatcher applied it and what it
    said it did (e.g. "5000 added, 0 removed in 50 request(s)"); group records by step."""
    client: AsyncMongoClient = AsyncMongoClient(db.url, tz_aware=True)
    try:
        rows = [doc async for doc in client[database].audit.find(
            {"at": {"$gte": datetime.fromtimestamp(since - 1, UTC)}, "okta_group_id": {"$ne": None}},
            {"_id": 0, "at": 1, "step": 1, "okta_group_id": 1, "okta_user_id": 1, "detail": 1})]
    finally:
        await client.close()
    steps: dict[str, int] = {}
    planned: dict[str, float] = {}
    applied: dict[str, tuple[float, str]] = {}
    for row in rows:
        steps[row["step"]] = steps.get(row["step"], 0) + 1
        at, gid = row["at"].timestamp(), row["okta_group_id"]
        if row.get("okta_user_id"):
            continue
        if row["step"] == "planned":
            planned[gid] = min(planned.get(gid, at), at)
        elif row["step"] == "applied":
            applied[gid] = max(applied.get(gid, (at, "")), (at, row.get("detail") or ""))
    return {"steps": steps, "planned": planned, "applied": applied}


async def groups(args, db: Database, sink: Sink, workdir: Path, *, tag: str = "groups") -> dict[str, Any]:
    big, team, teams = group_sizes(args.group_scale)
    n_users = max(big, team * teams)
    names = ["Bench All"] + [f"Bench Team {k:02d}" for k in range(teams)]
    vhost = Vhost(tag).__enter__()
    database = f"bench_{tag}_{uuid.uuid4().hex[:6]}"
    stack = Stack(workdir / tag, rabbitmq_url=vhost.url, mongodb_url=db.url, mongodb_db=database, plan="generous",
                  extra_env=_env(args, sink))
    result: dict[str, Any] = {"plan": "generous", "scale": args.group_scale, "users": n_users,
                              "sizes": {"big": big, "team_size": team, "teams": teams}, "groups": len(names),
                              "max_concurrency": args.max_concurrency}
    reader: ScimGroups | None = None
    try:
        stack.start_fixtures(["--log-entries", str(3 * n_users + 50_000)])
        async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
            # --- setup (not measured): users assigned, groups and their members in Okta, users provisioned --------
            t0 = time.time()
            app_id = await okta.create_app("Bench", "bench")

            async def in_okta() -> tuple[list[str], dict[str, str]]:
                ids = await _create_users(okta, n_users, "gbench")
                await _assign(okta, app_id, ids)
                group_ids = {name: await okta.create_group(name) for name in names}
                return ids, group_ids
            ids, group_ids = await asyncio.wait_for(in_okta(), args.timeout)
            expected: dict[str, set[str]] = {names[0]: set(ids[:big])}
            for k in range(teams):
                expected[names[k + 1]] = set(ids[k * team:(k + 1) * team])
            pairs = [(group_ids[name], u) for name in names for u in sorted(expected[name])]
            await asyncio.wait_for(_limited([lambda g=g, u=u: okta.add_group_member(g, u) for g, u in pairs],
                                            ADMIN_CONCURRENCY), args.timeout)
            total = len(pairs)
            result.update(members=total, okta_setup_s=round(time.time() - t0, 1))
            console.log(f"groups: {n_users:,} users assigned, {len(names)} groups with {total:,} members in Okta "
                        f"in {time.time() - t0:.1f} s")
            # The bridge starts after all that and reads the System Log from now on (the memberships are history to
            # it, as for a bridge installed in an org that has groups); its initial full sync provisions the users.
            stack.extra_env["POLLER_START_FROM"] = datetime.now(UTC).isoformat()
            base = connector(stack, app_id, args.max_concurrency)
            stack.write_connectors([base])
            t1 = time.time()
            stack.start_all()
            ext_of = await _wait_provisioned(args, db, database, stack, target, app_id, set(ids))
            result["provision_s"] = round(time.time() - t1, 1)
            console.log(f"groups: setup: {n_users:,} users provisioned in {result['provision_s']} s")
            await asyncio.sleep(2.0)  # the last audit records land; the poller is idle

            # --- the push (measured) ------------------------------------------------------------------------------
            restarted = [n for n in stack.processes if n.startswith(RESTARTED)]
            for name in restarted:
                stack.processes[name].stop()
            stack.write_connectors([{**base, "push_groups": names}])
            writes = WriteLog(target, await target.last_seq())
            phase = Phase(stack, db, sink)
            await phase.start(okta)
            started = time.time()
            for name in restarted:
                stack.restart(name)
            for name in restarted:  # new processes: their CPU counts from zero
                phase.marks.restarted(name, stack.processes[name].proc.pid)
            reader = ScimGroups(f"{stack.target_url}/scim/v2", stack.target_token)
            seen = {"landed": 0, "exact": 0, "at": None}
            last_report = time.monotonic()

            async def converged() -> bool:
                nonlocal last_report
                await writes.pull()
                on_target = await reader.groups()
                landed = exact = 0
                for name, want in expected.items():
                    members = [ext_of.get(m, m) for m in on_target.get(name, [])]
                    landed += len(want & set(members))
                    exact += len(members) == len(want) and set(members) == want
                seen.update(landed=landed, exact=exact)
                if exact == len(expected) and len(on_target) == len(expected):
                    seen["at"] = time.time()
                    return True
                _dead(stack)
                if time.monotonic() - last_report > PROGRESS_S:
                    last_report = time.monotonic()
                    console.log(f"groups: push: {landed:,}/{total:,} members on the target, {exact}/{len(expected)} "
                                f"groups exact ({time.time() - started:.0f} s)")
                return False
            try:
                await until(converged, args.timeout, f"{total:,} members in {len(names)} groups on the target",
                            interval=1.0)
            except TimeoutError as exc:
                result["error"] = f"TimeoutError: {exc}"
            await asyncio.sleep(1.5)  # the last audit records and polls land before the counters are read
            await writes.pull()
            figures = await phase.end(okta, total)
            result.update(figures, **_push_figures(writes.entries, started, seen, total, reader,
                                                   reader.ids.get(names[0])))
            result["db_commands_per_member"] = figures["round_trips_per_change"]
            audit = await _group_audit(db, database, started)
            planned, applied = audit["planned"], audit["applied"]
            big_id = group_ids[names[0]]
            team_ids = [group_ids[name] for name in names[1:]]
            lag = [applied[g][0] - planned[g] for g in team_ids if g in applied and g in planned]
            result["audit"] = {
                "steps": audit["steps"],
                "all_planned_s": _since(started, max(planned.values())) if len(planned) == len(names) else None,
                "all_applied_s": _since(started, max(a for a, _ in applied.values())) if len(applied) == len(names)
                else None,
                "big_group_planned_s": _since(started, planned.get(big_id)),
                "big_group_applied_s": _since(started, applied[big_id][0]) if big_id in applied else None,
                "big_group_detail": applied[big_id][1] if big_id in applied else None,
                "team_planned_to_applied_s": {k: (round(v, 2) if isinstance(v, float) else v)
                                              for k, v in percentiles(lag).items()},
                "planned_s": sorted(_since(started, at) for at in planned.values()),
                "applied_s": sorted(_since(started, at) for at, _ in applied.values()),
            }
            dead = [n for n, p in stack.processes.items() if not p.alive()]
            if dead:
                result["exited"] = dead
    except Exception as exc:  # noqa: BLE001 - reported; the other scenarios still run
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["logs"] = stack.logs()[-3000:]
    finally:
        if reader:
            await reader.aclose()
        stack.stop()
        vhost.__exit__(None, None, None)
    return result


async def _wait_provisioned(args, db: Database, database: str, stack: Stack, target: TargetAdmin, app_id: str,
                            wanted: set[str]) -> dict[str, str]:
    """Setup: every user has an account on the target and its link in the database (group push only pushes members
    whose link exists). Returns target id -> Okta user id."""
    client: AsyncMongoClient = AsyncMongoClient(db.url)
    started, last_report = time.monotonic(), time.monotonic()
    ext_of: dict[str, str] = {}

    async def done() -> bool:
        nonlocal last_report
        _dead(stack)
        ext_of.clear()
        ext_of.update({u["id"]: u.get("externalId") for u in await target.users()
                       if u.get("externalId") in wanted})
        if len(ext_of) >= len(wanted):
            linked = await client[database].links.count_documents({"app_id": app_id, "target_id": {"$ne": None}})
            if linked >= len(wanted):
                return True
        if time.monotonic() - last_report > PROGRESS_S:
            last_report = time.monotonic()
            console.log(f"groups: setup: {len(ext_of):,}/{len(wanted):,} users provisioned "
                        f"({len(ext_of) / (time.monotonic() - started):.0f}/s)")
        return False
    try:
        await until(done, args.timeout, f"setup: {len(wanted):,} users provisioned", interval=2.0)
    finally:
        await client.close()
    return ext_of


def _since(started: float, at: float | None) -> float | None:
    return None if at is None else round(at - started, 2)


def _push_figures(entries: list[dict], started: float, seen: dict, total: int, reader: ScimGroups,
                  big_target: str | None) -> dict[str, Any]:
    bridge = [e for e in entries if e.get("user_agent") != VERIFY_UA]
    kinds: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for e in bridge:
        kinds[request_kind(e)] = kinds.get(request_kind(e), 0) + 1
        statuses[str(e.get("status"))] = statuses.get(str(e.get("status")), 0) + 1
    group_requests = [e for e in bridge if "/Groups" in (e.get("path") or "")]
    group_writes = [e for e in group_requests if e["method"] in ("POST", "PATCH", "PUT", "DELETE")]
    patches = [e for e in group_requests if e["method"] == "PATCH"]
    carried = [patch_members(e.get("body")) for e in patches]
    durations = [float(e["duration_ms"]) for e in patches if e.get("duration_ms") is not None]
    big = [epoch(e["time"]) for e in patches if big_target and (e.get("path") or "").endswith("/" + big_target)]
    return {
        "seconds": _since(started, seen["at"]),
        "landed": seen["landed"], "groups_exact": seen["exact"], "converged": seen["at"] is not None,
        "members_per_s": round(total / (seen["at"] - started), 1) if seen["at"] else None,
        "first_group_request_s": _since(started, min((epoch(e["time"]) for e in group_requests), default=None)),
        "last_group_write_s": _since(started, max((epoch(e["time"]) + (e.get("duration_ms") or 0) / 1000
                                                   for e in group_writes), default=None)),
        "scim_requests": {"total": len(bridge), "by_kind": dict(sorted(kinds.items())), "statuses": statuses},
        "patch_members": {"patches": len(patches), "sum": sum(carried), "max": max(carried, default=0)},
        "big_group_patches_s": [_since(started, min(big, default=None)), _since(started, max(big, default=None))],
        "patch_ms": {k: (round(v, 1) if isinstance(v, float) else v) for k, v in percentiles(durations).items()},
        "verify_reads": reader.reads,
    }
