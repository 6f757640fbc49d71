"""``bridgectl dlq`` and ``bridgectl partitions``.

``dlq list | show ID | replay ID… | replay --all | drop ID… --yes``: see :mod:`okta_bridge.deadletters` (kept
``DEAD_LETTERS_RETENTION_DAYS``; only ids, type, version and reason; a replay plans again from Okta's current state).
``partitions show --pool P | reset --pool P [--count N] --yes``: a pool's partition leases, and the one safe way to
change its partition count (docs/architecture.md, Partitions).
Settings come from the same environment as the services (``RABBITMQ_URL``, ``OKTA_ORG_URL``, ``CONNECTORS_FILE``).
"""

from __future__ import annotations

import asyncio

import aio_pika
import typer
from aiormq.exceptions import ChannelNotFoundEntity
from rich.console import Console
from rich.table import Table

from bridgectl.common import BAD_INPUT, CONNECTORS, JSON, OPERATOR, bad_input, emit, load, operator_name
from okta_bridge.deadletters import DeadLetters, Fate, as_json
from okta_bridge.entry import cli_app
from okta_bridge.mongo import connect
from okta_bridge.stores.partitions import MongoPartitions, PoolState
from okta_bridge.topology import (RETRY_TIERS_MS, TRANSLATOR_QUEUE, hold_queue_name, legacy_pool_queue,
                                  partition_queue, retry_queue_name)
from okta_bridge.settings import BridgeSettings, OktaSettings

dead = cli_app(help="List, inspect, replay or drop dead letters (audited).")
parts = cli_app(help="A pool's partition leases; changing its partition count safely.")


def _letters(operator: str | None = None) -> DeadLetters:
    base = BridgeSettings()
    return DeadLetters(base.rabbitmq_url.get_secret_value(), OktaSettings().org_url,
                       operator_name(operator))


def _letter_summary(letter) -> dict:
    return {"id": letter.id, "kind": letter.kind, **letter.summary, "attempts": letter.attempts,
            "reason": letter.reason}


@dead.command("list")
def list_(limit: int = typer.Option(1000, help="at most this many"), json_: bool = JSON) -> None:
    """One line per dead letter: id, kind, app, user/group, reason."""
    letters = asyncio.run(_letters().list(limit))

    def render() -> None:
        table = Table("id", "kind", "app", "user", "group", "attempts", "reason")
        for letter in letters:
            s = letter.summary
            table.add_row(letter.id, letter.kind, s["app"], s["user"], s["group"], str(letter.attempts or ""),
                          letter.reason[:120])
        Console(width=200).print(table)
        typer.echo(f"{len(letters)} dead letter(s)")
    emit(json_, [_letter_summary(letter) for letter in letters], render)


@dead.command("show")
def show(letter_id: str, json_: bool = JSON) -> None:
    """The whole dead letter: reason, headers and message (always JSON). An unknown id: exit 2."""
    for letter in asyncio.run(_letters().list()):
        if letter.id == letter_id:
            typer.echo(as_json(letter))
            return
    bad_input(f"no dead letter {letter_id}")


@dead.command("replay")
def replay(ids: list[str] = typer.Argument(None), all_: bool = typer.Option(False, "--all"),
           operator: str = OPERATOR, connectors_file: str = CONNECTORS, json_: bool = JSON) -> None:
    """Do the dead letters' work again from Okta's current state (a user's plan: the translator looks at the app and
    user again and plans with a new version; a group plan: a group sync of the app); audited."""
    _take(ids, all_, operator, connectors_file, "replay", json_)


@dead.command("drop")
def drop(ids: list[str] = typer.Argument(...), yes: bool = typer.Option(False, "--yes"),
         operator: str = OPERATOR, json_: bool = JSON) -> None:
    """Remove dead letters for good (audited)."""
    if not yes:
        bad_input("refusing without --yes: dropped dead letters are gone")
    _take(ids, False, operator, None, "drop", json_)


def _take(ids: list[str] | None, all_: bool, operator: str | None, connectors_file: str | None, action,
          json_: bool = False) -> None:
    if not ids and not all_:
        bad_input("name dead letter ids, or --all")
    connectors = load(connectors_file)  # never writes to a target: the SCIM secrets are not needed
    chosen = "all" if all_ else set(ids or ())
    results = asyncio.run(_letters(operator).take(chosen, connectors, action))
    missing = set() if chosen == "all" else chosen - {t.letter.id for t in results}

    def render() -> None:
        for t in results:
            typer.echo(f"{t.letter.id} {t.letter.kind}: {t.outcome}")
        for letter_id in sorted(missing):
            typer.echo(f"{letter_id}: no such dead letter", err=True)
    emit(json_, {"results": [{"id": t.letter.id, "kind": t.letter.kind, "outcome": t.outcome} for t in results],
                 "unknown": sorted(missing)}, render)
    if missing:
        raise typer.Exit(BAD_INPUT)
    raise typer.Exit(1 if any(t.fate is Fate.NOT_REPLAYED for t in results) else 0)


@parts.command("show")
def partitions_show(pool: str = typer.Option("default", help="the dispatcher pool"), json_: bool = JSON) -> None:
    """Each partition's owner, lease expiry and fencing token, and the pool's live members."""
    try:
        state = asyncio.run(_pool_state(pool))
    except LookupError as exc:
        bad_input(str(exc))
    if json_:
        emit(True, {"pool": pool, "count": state.count,
                    "members": {m: e for m, e in state.members.items() if e > state.now},
                    "partitions": [{"partition": i, "owner": lease.owner if lease.owner and lease.expires > state.now
                                    else None, "expires": lease.expires, "token": lease.token}
                                   for i, lease in enumerate(state.leases)]}, lambda: None)
        return
    console = Console()
    console.print(f"pool {pool}: {state.count} partitions; members "
                  + (", ".join(f"{m} (until {e:%H:%M:%S})" for m, e in sorted(state.members.items())
                               if e > state.now) or "none live"))
    table = Table("partition", "owner", "lease", "token")
    for i, lease in enumerate(state.leases):
        live = lease.owner and lease.expires > state.now
        table.add_row(str(i), lease.owner or "-", f"{(lease.expires - state.now).total_seconds():.0f} s left"
                      if live else "free", str(lease.token))
    console.print(table)


@parts.command("reset")
def partitions_reset(pool: str = typer.Option("default", help="the dispatcher pool"),
                     count: int = typer.Option(None, help="the new count (default: the connectors file's)"),
                     yes: bool = typer.Option(False, "--yes"),
                     connectors_file: str = CONNECTORS, json_: bool = JSON) -> None:
    """Change a pool's partition count. The bridge must be stopped (no translator consuming, no live dispatcher)
    and the pool's partition, retry and hold queues empty: with another count a key hashes to another partition,
    so a plan still queued under the old count could be applied beside a newer one by another owner."""
    connectors = load(connectors_file)
    count = count or connectors.partitions(pool)
    if count != connectors.partitions(pool):
        bad_input(f"the connectors file says pools.{pool}.partitions = {connectors.partitions(pool)}: set it to "
                  f"{count} first, every service reads it")
    if not yes:
        bad_input("refusing without --yes")
    try:
        old = asyncio.run(_reset(pool, count))
    except (LookupError, RuntimeError) as exc:
        emit(json_, {"pool": pool, "reset": False, "refused": str(exc)},
             lambda: typer.echo(f"refused: {exc}", err=True))
        raise typer.Exit(1) from None
    emit(json_, {"pool": pool, "reset": True, "from": old, "to": count},
         lambda: typer.echo(f"pool {pool}: {old} -> {count} partitions; start the bridge again"))


async def _pool_state(pool: str) -> PoolState:
    base = BridgeSettings()
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    try:
        return await MongoPartitions(db, OktaSettings().org_url).read(pool)
    finally:
        await client.close()


async def _reset(pool: str, count: int) -> int:
    base = BridgeSettings()
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    connection = await aio_pika.connect(base.rabbitmq_url.get_secret_value())
    try:
        store = MongoPartitions(db, OktaSettings().org_url)
        state = await store.read(pool)

        async def queue(name: str):
            channel = await connection.channel()
            try:
                return await channel.declare_queue(name, passive=True)
            except ChannelNotFoundEntity:
                return None

        busy: list[str] = []
        translator = await queue(TRANSLATOR_QUEUE.name)
        if translator and translator.declaration_result.consumer_count:
            busy.append(f"{TRANSLATOR_QUEUE.name} has {translator.declaration_result.consumer_count} consumer(s): "
                        "stop the translators")
        names = [partition_queue(pool, p).name for p in range(state.count)] + [legacy_pool_queue(pool)]
        names += [retry_queue_name(f"plans.{pool}", t) for t in range(len(RETRY_TIERS_MS))]
        names += [hold_queue_name(f"plans.{pool}")]
        for name in names:
            q = await queue(name)
            if q is None:
                continue
            result = q.declaration_result
            if result.consumer_count:
                busy.append(f"{name} has {result.consumer_count} consumer(s): stop the dispatchers")
            if result.message_count:
                busy.append(f"{name} holds {result.message_count} plan(s): let them drain first (start the "
                            "dispatchers alone, without the translator and the poller)")
        if busy:
            raise RuntimeError("; ".join(busy))
        await store.reset(pool, count)
        for p in range(count, state.count):  # partitions beyond the new count: empty, nobody routes to them
            channel = await connection.channel()
            await channel.queue_delete(partition_queue(pool, p).name, if_empty=True)
        return state.count
    finally:
        await connection.close()
        await client.close()

