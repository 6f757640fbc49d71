"""`make bench` (``python -m tests.bench``): the bridge end to end, measured, beside baselines of the same run.

Every service runs as its own process against the Okta simulator and the demo SCIM target, on the machine's RabbitMQ
(a temporary vhost) and a fresh MongoDB-wire server the benchmark starts (``BENCH_MONGODB_URL`` for another server),
with tracing exported to a local OTLP receiver, as in production. Performance is printed, never asserted; the exit
status is 1 only when a scenario could not run. Figures go to ``.run/bench-<time>.json`` and docs/benchmark.md.

    python -m tests.bench                 # every scenario, about 12 minutes on 2 cores
    python -m tests.bench --quick         # a smoke run of about a minute
    python -m tests.bench --scenarios bulk,paced --bulk-users 2000
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from datetime import datetime

from rich.console import Console
from rich.table import Table

from tests.bench.baselines import mongo_baseline, rabbit_baseline
from tests.bench.groups import groups
from tests.bench.infra import (
    ROOT,
    Database,
    Sink,
    Vhost,
    dump,
    tempdir,
)
from tests.bench.scenarios import bulk, paced, scaleout

console = Console(width=140)
SCENARIOS = ("baselines", "bulk", "paced", "light", "workforce", "scaleout", "groups")
DEFAULT = SCENARIOS[:-1]  # within 15 minutes; the group scenario (about 5 minutes more) is `make bench-groups`


async def _reported(scenario) -> dict:
    """A scenario that fails is reported as such; the others still run."""
    try:
        return await scenario
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    p.add_argument("--scenarios", default=",".join(DEFAULT), help=f"any of {','.join(SCENARIOS)}")
    p.add_argument("--bulk-users", type=int, default=10_000)
    p.add_argument("--workforce-users", type=int, default=14_000, help="at least 90 s of running at 150/s")
    p.add_argument("--max-concurrency", type=int, default=16, help="the bench app's max_concurrency")
    p.add_argument("--paced-rate", type=float, default=100)
    p.add_argument("--paced-seconds", type=float, default=60)
    p.add_argument("--light-rate", type=float, default=2)
    p.add_argument("--light-seconds", type=float, default=120)
    p.add_argument("--scale-apps", type=int, default=20)
    p.add_argument("--scale-users", type=int, default=200, help="per app: plans queued before the dispatchers start")
    p.add_argument("--scale-concurrency", type=int, default=8)
    p.add_argument("--scale-latency-ms", type=int, default=500)
    p.add_argument("--scale-in-flight", type=int, default=16)
    p.add_argument("--scale-partitions", type=int, default=16)
    p.add_argument("--scale-replicas", default="1,2,4")
    p.add_argument("--scale-window", type=float, default=15)
    p.add_argument("--group-scale", type=float, default=1.0,
                   help="scales the groups scenario: one group of 5,000 x SCALE members and 50 of 100 x SCALE")
    p.add_argument("--raw", action="store_true", help="keep each paced change's times in the JSON (for analysis)")
    p.add_argument("--timeout", type=float, default=300, help="per phase")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for every service")
    args = p.parse_args(argv)
    if args.quick:
        args.bulk_users, args.workforce_users = 600, 600
        args.paced_rate, args.paced_seconds, args.light_seconds = 50, 3, 3
        args.scale_users, args.scale_replicas, args.scale_window = 10, "2", 3  # two replicas sharing: the smoke
        args.group_scale = 0.05
        args.scenarios = args.scenarios.replace(",workforce", "")
    args.scale_replicas = [int(r) for r in str(args.scale_replicas).split(",")]
    if args.scale_partitions % 4:
        p.error(f"--scale-partitions must be a multiple of 4 (the replicas measured are 1, 2 and 4, each owning an "
                f"equal share), not {args.scale_partitions}")
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    return args


async def amain(args: argparse.Namespace) -> int:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = tempdir(f"bench-{stamp}-")
    out = ROOT / ".run" / f"bench-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict = {"when": stamp, "host": platform.node(), "cpus": __import__("os").cpu_count(),
                    "args": {k: v for k, v in vars(args).items()}, "logs": str(workdir)}
    db, sink = Database(workdir), Sink()
    db.start()
    sink.start()
    report["database"] = "external" if db.external else "fresh SecantusDB started by the bench"
    failed = False
    try:
        if "baselines" in args.scenarios:
            console.log("baselines: the broker alone (3 hops) and the database alone")
            with Vhost("baseline") as vhost:
                report["rabbitmq"] = await rabbit_baseline(vhost.url, 3000 if not args.quick else 500, 0, 0, 64, 200,
                                                           600)
            report["mongodb"] = await (mongo_baseline(db.url, "bench_baseline", 100, 2_000, 100, 16, 2) if args.quick
                                       else mongo_baseline(db.url, "bench_baseline", 500, 20_000, 100, 16, 10))
        if "bulk" in args.scenarios:
            console.log(f"bulk: a backlog of {args.bulk_users:,} assignments")
            report["bulk"] = await bulk(args, db, sink, workdir, tag="bulk", users=args.bulk_users,
                                        keep=bool({"paced", "light"} & set(args.scenarios)))
            kept = report["bulk"].pop("_keep", None)
            if kept:
                try:
                    if "paced" in args.scenarios:
                        console.log(f"paced: {args.paced_rate:g} changes/s for {args.paced_seconds:g} s")
                        report["paced"] = await _reported(paced(args, db, sink, kept, rate=args.paced_rate,
                                                                seconds=args.paced_seconds, offset=0, label="paced"))
                    if "light" in args.scenarios:
                        console.log(f"light: {args.light_rate:g} changes/s for {args.light_seconds:g} s")
                        report["light"] = await _reported(paced(
                            args, db, sink, kept, rate=args.light_rate, seconds=args.light_seconds,
                            offset=int(args.paced_rate * args.paced_seconds) + 1, label="light"))
                finally:
                    kept[0].stop()
                    kept[1].__exit__(None, None, None)
        if "workforce" in args.scenarios:
            console.log(f"workforce: a backlog of {args.workforce_users:,} assignments, Workforce limits, 50 % share")
            report["workforce"] = await bulk(args, db, sink, workdir, tag="workforce", users=args.workforce_users,
                                             plan="workforce")
        if "scaleout" in args.scenarios:
            console.log(f"scale-out: {args.scale_apps} apps, replicas {args.scale_replicas}")
            report["scaleout"] = await scaleout(args, db, sink, workdir)
        if "groups" in args.scenarios:
            console.log(f"groups: Push Groups at scale {args.group_scale:g}")
            report["groups"] = await groups(args, db, sink, workdir)
    finally:
        sink.stop()
        db.stop()
    failed = any(isinstance(v, dict) and (v.get("error") or any(isinstance(r, dict) and r.get("error")
                                                                for r in (v.get("runs") or {}).values()))
                 for v in report.values())
    dump(out, report)
    print_report(report)
    console.print(f"figures: {out}")
    return 1 if failed else 0


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value}{unit}"


def print_report(r: dict) -> None:
    baseline = (r.get("rabbitmq") or {}).get("bulk", {}).get("msgs_per_s")
    table = Table("figure", "bulk", "workforce", title="Throughput and costs (one run, this machine)")
    rows = [("changes", "changes"), ("changes/s", "changes_per_s"),
            ("CPU of the 4 services per change (ms)", "cpu_ms_per_change_services"),
            ("CPU of every process per change (ms)", "cpu_ms_per_change_all"),
            ("Okta calls per change", "okta_calls_per_change"), ("Okta 429s", "okta_429"),
            ("DB round trips per change", "round_trips_per_change"), ("spans exported", "spans_exported")]
    for label, key in rows:
        table.add_row(label, *(_fmt((r.get(s) or {}).get(key)) for s in ("bulk", "workforce")))
    for s in ("bulk", "workforce"):
        if r.get(s, {}).get("error"):
            console.print(f"[red]{s}: {r[s]['error']}[/]")
    table.add_row("ratio to the broker alone (3 hops)",
                  *(_fmt(round((r.get(s) or {}).get("changes_per_s", 0) / baseline, 3) if baseline else None)
                    for s in ("bulk", "workforce")))
    table.add_row("peak RSS per service (MB)",
                  *(", ".join(f"{k.split('_')[0]} {v}" for k, v in ((r.get(s) or {}).get("peak_rss_mb") or {}).items())
                    for s in ("bulk", "workforce")))
    console.print(table)
    if r.get("rabbitmq"):
        console.print(f"baselines: RabbitMQ alone, 3 hops: {_fmt(baseline)} msg/s; MongoDB-wire server: insert_one "
                      f"{_fmt(r['mongodb'].get('insert_one_per_s'))}/s, insert_many "
                      f"{_fmt(r['mongodb'].get('insert_many_docs_per_s'))} docs/s, bulk update "
                      f"{_fmt(r['mongodb'].get('bulk_update_docs_per_s'))} docs/s, the pre-batching per-change "
                      f"operations {_fmt(r['mongodb'].get('pipeline_op_mix_changes_per_s'))} changes/s")
    for s in ("bulk", "workforce"):
        if r.get(s, {}).get("okta_calls"):
            minutes = max(r[s].get("seconds", 60), 1) / 60
            per_min = {b: round(n / minutes) for b, n in r[s]["okta_calls"].items()}
            most, limits = r[s].get("okta_most_in_a_minute") or {}, r[s].get("okta_token_limits") or {}
            windows = ", ".join(f"{b} {most.get(b, 0)}/{limits[b]}" for b in sorted(limits))
            console.print(f"{s}: Okta calls {r[s]['okta_calls']} (per minute from the first receipt to the last write {per_min}; the most in one "
                          f"of Okta's minute windows / the token's limit: {windows}); DB commands "
                          f"{r[s]['mongo_commands']}; max_concurrency {r[s].get('max_concurrency')}")
    for s in ("paced", "light"):
        x = r.get(s)
        if x:
            lat, pub = x.get("latency_s") or {}, x.get("published_to_receipt_s") or {}
            console.print(f"{s}: {x.get('offered_per_s')}/s for {x.get('seconds')} s: receipt -> SCIM write p50 "
                          f"{_fmt(lat.get('p50'))} s, p95 {_fmt(lat.get('p95'))} s, p99 {_fmt(lat.get('p99'))} s, max "
                          f"{_fmt(lat.get('max'))} s; published -> receipt p50 {_fmt(pub.get('p50'))} s, p99 "
                          f"{_fmt(pub.get('p99'))} s; receipt -> planned p50 "
                          f"{_fmt((x.get('receipt_to_planned_s') or {}).get('p50'))} s, p99 "
                          f"{_fmt((x.get('receipt_to_planned_s') or {}).get('p99'))} s; planned -> SCIM write p50 "
                          f"{_fmt((x.get('planned_to_write_s') or {}).get('p50'))} s, p99 "
                          f"{_fmt((x.get('planned_to_write_s') or {}).get('p99'))} s; offered "
                          f"{x.get('achieved_offer_per_s')}/s {x.get('error') or ''}")
    sc = r.get("scaleout")
    if sc:
        console.print(f"scale-out: ceiling {sc.get('ceiling_per_replica')} SCIM requests/s per replica; most in flight "
                      f"for one app at any time of the scenario (the target's gauge, start-ups, hand-overs and "
                      f"shutdowns included): {sc.get('peak_in_flight_per_app_at_any_time')}")
        for replicas, run in sc["runs"].items():
            console.print(f"  {replicas} replica(s): {_fmt(run.get('requests_per_s'))} requests/s, "
                          f"{_fmt(run.get('of_ceiling'))} of the ceiling, {_fmt(run.get('vs_one_replica'))}x one "
                          f"replica; peak in flight per app {run.get('peak_in_flight_per_app')}; cores: "
                          f"dispatchers {_fmt(run.get('dispatchers_cores'))}, target {_fmt(run.get('target_cores'))}"
                          f", idle {_fmt(run.get('idle_cores'))}; shared out after {_fmt(run.get('partitions_spread_s'))}"
                          f" s (partitions), {_fmt(run.get('permits_spread_s'))} s (permits) {run.get('error') or ''}")
    g = r.get("groups")
    if g:
        sizes, patches = g.get("sizes") or {}, g.get("patch_members") or {}
        console.print(f"groups: {_fmt(g.get('members'))} members in {g.get('groups')} groups (1 of {sizes.get('big')}, "
                      f"{sizes.get('teams')} of {sizes.get('team_size')}) on the target in {_fmt(g.get('seconds'))} s "
                      f"after the restart (setup {_fmt(g.get('provision_s'))} s, not measured); SCIM "
                      f"{(g.get('scim_requests') or {}).get('by_kind')}; PATCH members max {patches.get('max')}, sum "
                      f"{patches.get('sum')}; Okta calls {g.get('okta_calls')}; DB commands per member "
                      f"{_fmt(g.get('db_commands_per_member'))}; CPU s {g.get('cpu_s')} {g.get('error') or ''}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    code = asyncio.run(amain(args))
    console.print(f"bench took {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
