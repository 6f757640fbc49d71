"""``bridgectl guard list | held APP | release APP [--user …] | discard APP [--user …]``: the accidental-deactivation
guard (:mod:`translator.guard`).

A release never replays the held deactivation: it marks the chosen keys released and publishes a "look at this
(app, user) again" event for each (as a dead-letter replay does), so the translator plans from Okta's state at that
moment; a user assigned again meanwhile is updated, not deactivated. A discard drops the held keys (the target keeps
the accounts as they are). Both are audited with who did it (``--as``, default the OS user).
"""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from bridgectl.bus import mongo, operator_bus
from bridgectl.common import (CONNECTORS, JSON, OPERATOR, bad_input, console, emit, load, operator_name, progress,
                              resolve_app)
from okta_bridge.contracts import AuditStep, Reason, is_okta_id
from okta_bridge.deadletters import look_again
from okta_bridge.entry import cli_app
from okta_bridge.settings import OktaSettings
from okta_bridge.stores.guards import MongoGuards

guard = cli_app(help="The accidental-deactivation guard: see, release or discard held deactivations.")
USERS = typer.Option(None, "--user", help="only these users, Okta ids or logins (repeat); default: all held")


@guard.command("list")
def list_(connectors_file: str = CONNECTORS, json_: bool = JSON) -> None:
    """Each app's guard: paused or not, deactivations counted in the window, held keys; exit 1 if any is paused."""
    connectors = load(connectors_file)
    names = {a.okta_app_id: a.name for a in connectors.apps}
    states = asyncio.run(_states())

    def render() -> None:
        table = Table("app", "threshold", "window", "paused", "counted", "held")
        for a in connectors.apps:
            s = next((g for g in states if g.app_id == a.okta_app_id), None)
            table.add_row(a.name, str(a.guard.max_deactivations if a.guard.max_deactivations is not None else "off"),
                          f"{a.guard.window_s} s", "[red]PAUSED[/]" if s and s.paused else "no",
                          str(s.count if s else 0), str(s.held if s else 0))
        console().print(table)
    emit(json_, [{"app": names.get(s.app_id, s.app_id), "app_id": s.app_id, "paused": s.paused, "counted": s.count,
                  "window_start": s.window_start, "paused_at": s.paused_at, "held": s.held} for s in states], render)
    raise typer.Exit(1 if any(s.paused for s in states) else 0)


async def _states():
    async with mongo() as db:
        return await MongoGuards(db, OktaSettings().org_url).states()


@guard.command("held")
def held(app: str, connectors_file: str = CONNECTORS, json_: bool = JSON) -> None:
    """The app's held deactivations: user id, plan version, cause, when."""
    connector = resolve_app(load(connectors_file), app)
    items = asyncio.run(_held(connector.okta_app_id))
    emit(json_, [{"user": h.user_id, "version": h.version, "cause": h.cause, "held_at": h.held_at} for h in items],
         lambda: [typer.echo(f"{h.user_id} v{h.version} {h.cause} {h.held_at:%Y-%m-%d %H:%M:%S}") for h in items]
         or typer.echo(f"{connector.name}: nothing held"))


async def _held(app_id: str):
    async with mongo() as db:
        return await MongoGuards(db, OktaSettings().org_url).held(app_id)


@guard.command("release")
def release(app: str, users: list[str] = USERS, operator: str = OPERATOR, connectors_file: str = CONNECTORS,
            json_: bool = JSON) -> None:
    """Let the held deactivations go: each held key is planned again from Okta's state now (audited)."""
    _act("release", app, users, operator, connectors_file, json_)


@guard.command("discard")
def discard(app: str, users: list[str] = USERS, yes: bool = typer.Option(False, "--yes"), operator: str = OPERATOR,
            connectors_file: str = CONNECTORS, json_: bool = JSON) -> None:
    """Drop the held deactivations: nothing is sent for them (audited)."""
    if not yes:
        bad_input("refusing without --yes: the held deactivations are dropped and never sent")
    _act("discard", app, users, operator, connectors_file, json_)


def _act(action: str, app: str, users: list[str] | None, operator: str | None, connectors_file: str | None,
         json_: bool) -> None:
    from bridgectl.oneuser import user_ids

    connector = resolve_app(load(connectors_file), app)
    for user in users or ():
        if not is_okta_id(user) and ("/" in user or "@" not in user):
            bad_input("--user: neither an Okta user id (20 letters and digits, 00u…) nor a login")
    users = user_ids(users)
    by = operator_name(operator)
    done = asyncio.run(_apply(action, connector.okta_app_id, users or None, by, not json_))
    if done is None:
        bad_input(f"the guard of {connector.name} is not set: nothing is held")
    if not done:
        bad_input(f"none of {', '.join(users or [])} is held for {connector.name}")
    verb = "released (planned again from Okta now)" if action == "release" else "discarded"
    emit(json_, {"app": connector.name, "action": action, "by": by, "users": [h.user_id for h in done]},
         lambda: typer.echo(f"{connector.name}: {len(done)} held deactivation(s) {verb} by {by}"))


async def _apply(action: str, app_id: str, users: list[str] | None, by: str, bars: bool = False,
                 service: str = "operator-cli"):
    """Release or discard (``users``: None for all held); None when the app's guard is not set. ``service`` is who
    records it in the audit (``console`` from the web console), ``by`` the person or token."""
    org = OktaSettings().org_url
    async with mongo() as db:
        guards = MongoGuards(db, org)
        if not await guards.is_set(app_id):
            return None
        if action == "discard":
            done = await guards.discard(app_id, users, by)
            async with operator_bus(service) as (_, audit):
                async with audit.batch():
                    for h in done:
                        await audit.record(AuditStep.SKIPPED, reason=Reason.OPERATOR, app_id=app_id,
                                           okta_user_id=h.user_id, plan_version=h.version,
                                           event_type="operator:guard-discard", actor=by[:200],
                                           detail=f"held deactivation discarded by {by}")
            return done
        # marked released first (the translator lets a released key's deactivation through, uncounted), then a
        # "look again" published for each; a key whose publish failed is held again
        chosen = await guards.release(app_id, users, by)
        published = 0
        try:
            async with operator_bus(service) as (publisher, audit):
                async with audit.batch():
                    for h in progress(chosen, "releasing", bars):
                        exchange, routing_key, event = look_again(org, app_id, h.user_id)
                        await publisher.publish(event, exchange=exchange, routing_key=routing_key)
                        published += 1
                        await audit.record(AuditStep.REPLAYED, reason=Reason.OPERATOR, app_id=app_id,
                                           okta_user_id=h.user_id, event_uuid=event.event_uuid,
                                           event_type="operator:guard-release", actor=by[:200],
                                           detail=f"held deactivation released by {by}: planned again from Okta's "
                                                  "state")
        except Exception:
            await guards.hold(chosen[published:])
            raise
        return chosen
