"""``bridgectl status``: the bridge at a glance, each part read from where the services record it.

| part                     | from                                                                                 |
|--------------------------|--------------------------------------------------------------------------------------|
| poller leader            | MongoDB ``poller_lease`` (the lease's owner and expiry, on the database's clock)      |
| last successful poll     | MongoDB ``poll_cursor`` (``last_success_at``, written by the leader after each poll)  |
| backlog per queue        | RabbitMQ: passive queue declares (message and consumer counts; no right needed)       |
| partitions and owners    | MongoDB ``partitions`` (each pool's leases)                                           |
| open circuits            | MongoDB ``observed`` (the dispatchers write their circuits when one opens or closes)  |
| Okta budget per bucket   | MongoDB ``observed`` (the Okta clients' last rate-limit headers, at most every 5 s)   |
| guards                   | MongoDB ``guards`` / ``guard_held`` (the translators' deactivation guard)             |
| dead letters waiting     | RabbitMQ: the dead-letter queue's message count                                        |

Exit 1 when something needs a person: no live poller leader, dead letters waiting, an open circuit or a paused
guard.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from bridgectl.bus import mongo
from bridgectl.common import CONNECTORS, JSON, console, emit, load
from okta_bridge.mongo import key
from okta_bridge.settings import BridgeSettings, OktaSettings
from okta_bridge.stores.cursor import MongoPollerState
from okta_bridge.stores.guards import MongoGuards
from okta_bridge.stores.leases import Leases
from okta_bridge.stores.observed import MongoObserved
from okta_bridge.stores.partitions import MongoPartitions
from okta_bridge.topology import DEAD_LETTER_QUEUE, pool_names, translator_names


def status(connectors_file: str = CONNECTORS, json_: bool = JSON) -> None:
    """Poller leader and last poll, backlog per queue, partitions and owners, open circuits, Okta budget, guards,
    dead letters waiting; each with where it comes from."""
    connectors = load(connectors_file)
    report = asyncio.run(gather(connectors))
    emit(json_, report, lambda: render(report))
    raise typer.Exit(1 if report["problems"] else 0)


async def gather(connectors) -> dict[str, Any]:
    org = OktaSettings().org_url
    pools = {p: connectors.partitions(p) for p in connectors.pool_names()}
    names = {a.okta_app_id: a.name for a in connectors.apps}
    report: dict[str, Any] = {"sources": {
        "poller": "MongoDB poller_lease + poll_cursor", "queues": "RabbitMQ passive queue declares",
        "partitions": "MongoDB partitions", "circuits": "MongoDB observed (written by the dispatchers)",
        "okta_budget": "MongoDB observed (written by the poller and translators, at most every 5 s)",
        "guards": "MongoDB guards", "dead_letters": "RabbitMQ dead-letter queue"}}
    async with mongo() as db:
        poller_lease = await Leases.poller(db, 10).peek(key("poller", org))
        cursor = await MongoPollerState(db, org).load()
        last = cursor.last_success_at if cursor else None
        now = datetime.now(UTC)
        report["poller"] = {"leader": poller_lease.owner if poller_lease.live else None,
                            "lease_expires": poller_lease.expires,
                            "last_success_at": last,
                            "seconds_since_last_poll": round((now - _utc(last)).total_seconds(), 1) if last else None}
        report["partitions"] = {}
        for pool in sorted(pools):
            try:
                state = await MongoPartitions(db, org).read(pool)
            except LookupError:
                report["partitions"][pool] = None
                continue
            report["partitions"][pool] = [{"partition": i, "owner": lease.owner if lease.owner
                                           and lease.expires > state.now else None}
                                          for i, lease in enumerate(state.leases)]
        observed = MongoObserved(db, org)
        report["circuits"] = [{**c, "app": names.get(c.get("app_id"), c.get("app_id"))}
                              for c in await observed.open_circuits()]
        report["okta_budget"] = await observed.okta_budget()
        report["guards"] = [{"app": names.get(g.app_id, g.app_id), "paused": g.paused, "counted": g.count,
                             "held": g.held} for g in await MongoGuards(db, org).states()]
    report["queues"] = await queue_counts(pools)
    dlq = report["queues"].get(DEAD_LETTER_QUEUE.name) or {}
    report["dead_letters"] = dlq.get("messages")
    problems = []
    if not report["poller"]["leader"]:
        problems.append("no live poller leader")
    if report["dead_letters"]:
        problems.append(f"{report['dead_letters']} dead letter(s) waiting (bridgectl dlq list)")
    problems += [f"circuit open: {c['app']}" for c in report["circuits"]]
    problems += [f"guard paused: {g['app']} ({g['held']} held; bridgectl guard release|discard)"
                 for g in report["guards"] if g["paused"]]
    report["problems"] = problems
    return report


async def queue_counts(pools: dict[str, int]) -> dict[str, Any]:
    """Message and consumer counts of every queue the bridge declares: passive declares through aio-pika (a missing
    queue closes its channel: reported as missing)."""
    import aio_pika

    queues: list[str] = list(translator_names()[1])
    for pool, count in sorted(pools.items()):
        queues += [q for q in pool_names(pool, count)[1] if q not in queues]
    out: dict[str, Any] = {}
    connection = await aio_pika.connect(BridgeSettings().rabbitmq_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        for name in queues:
            if channel.is_closed:
                channel = await connection.channel()
            try:
                result = (await channel.declare_queue(name, passive=True)).declaration_result
                out[name] = {"messages": result.message_count, "consumers": result.consumer_count}
            except aio_pika.exceptions.ChannelClosed:
                out[name] = None
    return out


def render(report: dict[str, Any]) -> None:
    c = console()
    p = report["poller"]
    c.print(f"[bold]poller[/] leader: {p['leader'] or '[red]none live[/]'}; last successful poll: "
            + (f"{p['seconds_since_last_poll']} s ago" if p["seconds_since_last_poll"] is not None else "never")
            + f"  [dim]({report['sources']['poller']})[/]")
    table = Table("queue", "messages", "consumers", title=f"backlog ({report['sources']['queues']})")
    for name, q in report["queues"].items():
        if q is None:
            table.add_row(name, "[red]missing[/]", "")
        elif q["messages"] or q["consumers"]:
            table.add_row(name, str(q["messages"]), str(q["consumers"]))
    c.print(table)
    for pool, leases in report["partitions"].items():
        owners = "not claimed yet" if leases is None else ", ".join(
            f"p{i['partition']}: {i['owner'] or 'free'}" for i in leases)
        c.print(f"[bold]pool {pool}[/] {owners}  [dim]({report['sources']['partitions']})[/]")
    c.print("[bold]open circuits[/]: " + (", ".join(f"{x['app']} ({x.get('reason', '')})" for x in report["circuits"])
                                          or "none") + f"  [dim]({report['sources']['circuits']})[/]")
    budget = report["okta_budget"]
    c.print("[bold]Okta budget[/]: " + (", ".join(f"{b}: {v['remaining']}/{v['limit']}" for b, v in sorted(budget.items()))
                                        or "not recorded yet") + f"  [dim]({report['sources']['okta_budget']})[/]")
    c.print("[bold]guards[/]: " + (", ".join(f"{g['app']}: {'[red]PAUSED[/] ' if g['paused'] else ''}"
                                             f"{g['counted']} counted, {g['held']} held" for g in report["guards"])
                                   or "nothing counted") + f"  [dim]({report['sources']['guards']})[/]")
    c.print(f"[bold]dead letters waiting[/]: {report['dead_letters']}  [dim]({report['sources']['dead_letters']})[/]")
    for problem in report["problems"]:
        c.print(f"[red]! {problem}[/]")


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
