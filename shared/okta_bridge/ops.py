"""Operator commands for the bridge as a whole (typer): ``python -m okta_bridge.ops COMMAND``.

``dead-letters list | show ID | replay ID… | replay --all | drop ID…``: see :mod:`okta_bridge.deadletters` (kept
``DEAD_LETTERS_RETENTION_DAYS``; only ids, type, version and reason; a replay plans again from Okta's current state).
``partitions show --pool P | reset --pool P [--count N] --yes``: a pool's partition leases, and the one safe way to
change its partition count (docs/architecture.md, Partitions).
Settings come from the same environment as the services (``RABBITMQ_URL``, ``OKTA_ORG_URL``, ``CONNECTORS_FILE``).
"""

from __future__ import annotations

import asyncio
import getpass

import aio_pika
import typer
from aiormq.exceptions import ChannelNotFoundEntity
from rich.console import Console
from rich.table import Table

from okta_bridge.connectors import ConnectorsFileError, load_connectors
from okta_bridge.deadletters import DeadLetters, as_json
from okta_bridge.entry import cli_app, run_cli
from okta_bridge.mongo import connect
from okta_bridge.stores.partitions import MongoPartitions, PoolState
from okta_bridge.topology import (RETRY_TIERS_MS, TRANSLATOR_QUEUE, hold_queue_name, legacy_pool_queue,
                                  partition_queue, retry_queue_name)
from okta_bridge.settings import BridgeSettings, OktaSettings

cli = cli_app(help=__doc__)
dead = cli_app(help="List, inspect, replay or drop dead letters (audited).")
cli.add_typer(dead, name="dead-letters")
parts = cli_app(help="A pool's partition leases; changing its partition count safely.")
cli.add_typer(parts, name="partitions")


def _letters(operator: str | None = None) -> DeadLetters:
    base = BridgeSettings()
    return DeadLetters(base.rabbitmq_url.get_secret_value(), OktaSettings().org_url,
                       operator or getpass.getuser())


@dead.command("list")
def list_(limit: int = typer.Option(1000, help="at most this many")) -> None:
    """One line per dead letter: id, kind, app, user/group, reason."""
    letters = asyncio.run(_letters().list(limit))
    table = Table("id", "kind", "app", "user", "group", "attempts", "reason")
    for letter in letters:
        s = letter.summary
        table.add_row(letter.id, letter.kind, s["app"], s["user"], s["group"], str(letter.attempts or ""),
                      letter.reason[:120])
    Console(width=200).print(table)
    typer.echo(f"{len(letters)} dead letter(s)")


@dead.command("show")
def show(letter_id: str) -> None:
    """The whole dead letter: reason, headers and message."""
    for letter in asyncio.run(_letters().list()):
        if letter.id == letter_id:
            typer.echo(as_json(letter))
            return
    typer.echo(f"no dead letter {letter_id}", err=True)
    raise typer.Exit(1)


@dead.command("replay")
def replay(ids: list[str] = typer.Argument(None), all_: bool = typer.Option(False, "--all"),
           operator: str = typer.Option(None, envvar="USER", help="who replays (recorded in the audit)"),
           connectors_file: str = typer.Option(None, help="default: CONNECTORS_FILE")) -> None:
    """Do the dead letters' work again from Okta's current state (a user's plan: the translator looks at the app and
    user again and plans with a new version; a group plan: a group sync of the app); audited."""
    _take(ids, all_, operator, connectors_file, "replay")


@dead.command("drop")
def drop(ids: list[str] = typer.Argument(...), yes: bool = typer.Option(False, "--yes"),
         operator: str = typer.Option(None, envvar="USER", help="who drops (recorded in the audit)")) -> None:
    """Remove dead letters for good (audited)."""
    if not yes:
        typer.echo("refusing without --yes: dropped dead letters are gone", err=True)
        raise typer.Exit(2)
    _take(ids, False, operator, None, "drop")


def _take(ids: list[str] | None, all_: bool, operator: str | None, connectors_file: str | None, action) -> None:
    if not ids and not all_:
        typer.echo("name dead letter ids, or --all", err=True)
        raise typer.Exit(2)
    try:  # the operator's commands never write to a target: the SCIM secrets are not needed
        connectors = load_connectors(connectors_file or BridgeSettings().connectors_file, secrets=False)
    except ConnectorsFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    chosen = "all" if all_ else set(ids or ())
    results = asyncio.run(_letters(operator).take(chosen, connectors, action))
    for letter, outcome in results:
        typer.echo(f"{letter.id} {letter.kind}: {outcome}")
    missing = set() if chosen == "all" else chosen - {letter.id for letter, _ in results}
    for letter_id in sorted(missing):
        typer.echo(f"{letter_id}: no such dead letter", err=True)
    failed = missing or any(not o.startswith(("replayed", "dropped")) for _, o in results)
    raise typer.Exit(1 if failed else 0)


@parts.command("show")
def partitions_show(pool: str = typer.Option("default", help="the dispatcher pool")) -> None:
    """Each partition's owner, lease expiry and fencing token, and the pool's live members."""
    try:
        state = asyncio.run(_pool_state(pool))
    except LookupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
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
                     connectors_file: str = typer.Option(None, help="default: CONNECTORS_FILE")) -> None:
    """Change a pool's partition count. The bridge must be stopped (no translator consuming, no live dispatcher)
    and the pool's partition, retry and hold queues empty: with another count a key hashes to another partition,
    so a plan still queued under the old count could be applied beside a newer one by another owner."""
    try:
        connectors = load_connectors(connectors_file or BridgeSettings().connectors_file)
    except ConnectorsFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    count = count or connectors.partitions(pool)
    if count != connectors.partitions(pool):
        typer.echo(f"the connectors file says pools.{pool}.partitions = {connectors.partitions(pool)}: set it to "
                   f"{count} first, every service reads it", err=True)
        raise typer.Exit(2)
    if not yes:
        typer.echo("refusing without --yes", err=True)
        raise typer.Exit(2)
    try:
        old = asyncio.run(_reset(pool, count))
    except (LookupError, RuntimeError) as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"pool {pool}: {old} -> {count} partitions; start the bridge again")


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


if __name__ == "__main__":
    run_cli("okta_bridge.ops", cli)
