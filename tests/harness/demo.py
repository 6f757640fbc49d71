"""`make run`: the whole pipeline on this machine, with the Okta simulator and a Jira-like SCIM 1.1 app.

Seeds a small org (some users assigned before the bridge starts: they arrive by the initial full sync), starts the
four services as separate processes, then acts as an Okta admin (assign, update, suspend, deactivate, reactivate,
unassign, and joins and leaves of the pushed group ``jira-developers``) and shows the changes arriving in the app,
live. Ctrl-C stops everything it started, and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from contextlib import suppress
from pathlib import Path

import aio_pika
import httpx
import typer
from pymongo import AsyncMongoClient
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from demo_scim_target.admin_client import TargetAdmin
from tests.harness.devstack import DevStack
from okta_simulator.admin_client import SimulatorAdmin

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper"), ("Edsger", "Dijkstra"),
          ("Barbara", "Liskov"), ("Donald", "Knuth"), ("Frances", "Allen"), ("Ken", "Thompson")]
DEMO_QUEUES = ("translator.work", "dispatcher.default", "audit.records")

cli = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)  # no settings or URLs printed


@cli.command()
def main(duration: float = typer.Option(0, help="stop after this many seconds (0: until Ctrl-C)"),
         sim_port: int = 8040, target_port: int = 8050, audit_port: int = 8070,
         console_port: int = 8090) -> None:
    asyncio.run(run(duration, sim_port, target_port, audit_port, console_port))


# the web console's demo sign-in: a person of the simulated org in the okta-bridge-admins group
CONSOLE_ADMIN, CONSOLE_PASSWORD = "ops.admin@example.com", "demo-console-password"


async def run(duration: float, sim_port: int, target_port: int, audit_port: int, console_port: int = 8090) -> None:
    console = Console()
    stack = DevStack(ROOT / ".run" / "demo", mongodb_db="okta_bridge_demo", sim_port=sim_port,
                     target_port=target_port, audit_port=audit_port, console_port=console_port,
                     extra_env={k: v for k, v in os.environ.items() if k.startswith("OTEL_")}
                     | {"POLLER_IDLE_INTERVAL_S": "1"})
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await _fresh_state(stack)
        console.print("[bold]starting the Okta simulator and the demo SCIM app[/]")
        stack.use_console_oidc()  # the simulator signs people in to the console (OIDC, PKCE)
        stack.start_fixtures()
        async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
            app_id, users, group_id = await _seed(okta)
            admins = await okta.create_group("okta-bridge-admins", "admins of the bridge's web console")
            person = await okta.create_user({"login": CONSOLE_ADMIN, "email": CONSOLE_ADMIN, "firstName": "Ops",
                                             "lastName": "Admin"})
            await okta.set_password(person, CONSOLE_PASSWORD)
            await okta.add_group_member(admins, person)
            stack.write_connectors([{
                "okta_app_id": app_id, "name": "jira", "base_url": f"{stack.target_url}/scim/v1/",
                "auth": {"type": "header", "header_name": "Authorization", "value_env": "DEMO_TARGET_TOKEN",
                         "value_prefix": "Bearer "},
                "attribute_mappings": {"urn:okta:jira:1.0:user:department": "profile.department"},
                "push_groups": ["jira-developers"],
            }])
            console.print("[bold]starting audit-recorder, translator, scim-dispatcher, queue-poller[/]")
            stack.start_services()
            console.print("[bold]starting the web console[/]")
            stack.start_console()
            _write_prometheus_config(stack)
            admin = asyncio.create_task(_act_as_admin(okta, app_id, users, group_id, stop))
            await _show(console, stack, target, stop, duration)
            admin.cancel()
            with suppress(asyncio.CancelledError):
                await admin
    finally:
        console.print("stopping what the demo started")
        stack.stop()
        _stop_started_dependencies()


async def _fresh_state(stack: DevStack) -> None:
    """The simulator starts empty each run, so the demo's database and queues start empty too."""
    client: AsyncMongoClient = AsyncMongoClient(stack.mongodb_url, serverSelectionTimeoutMS=10_000)
    await client.drop_database(stack.mongodb_db)
    await client.close()
    connection = await aio_pika.connect(stack.rabbitmq_url)
    async with connection:
        for name in DEMO_QUEUES:
            channel = await connection.channel()
            with suppress(aio_pika.exceptions.ChannelClosed):
                await channel.queue_delete(name)


async def _seed(okta: SimulatorAdmin) -> tuple[str, list[str], str]:
    app_id = await okta.create_app("Jira (on-prem)", "jira")
    users = []
    for first, last in PEOPLE:
        login = f"{first.lower()}.{last.lower()}@example.com"
        users.append(await okta.create_user({"login": login, "email": login, "firstName": first, "lastName": last,
                                             "displayName": f"{first} {last}", "department": "R&D"}))
    for user_id in users[:3]:  # assigned before the bridge starts: the initial full sync brings them
        await okta.assign_user(app_id, user_id)
    group_id = await okta.create_group("jira-developers", "pushed to Jira by the bridge (push_groups)")
    for user_id in users[:4]:  # users[3] joins the target group once the script assigns (provisions) them
        await okta.add_group_member(group_id, user_id)
    return app_id, users, group_id


async def _act_as_admin(okta: SimulatorAdmin, app_id: str, users: list[str], group_id: str,
                        stop: asyncio.Event) -> None:
    script = [
        ("assign", users[3]), ("assign", users[4]), ("update", users[0]), ("join", users[4]), ("suspend", users[1]),
        ("unsuspend", users[1]), ("leave", users[0]), ("deactivate", users[2]), ("assign", users[5]),
        ("unassign", users[4]), ("reactivate", users[2]), ("activate", users[2]), ("assign", users[6]),
        ("join", users[6]),
    ]
    await asyncio.sleep(4)
    step = 0
    while not stop.is_set():
        action, user_id = script[step] if step < len(script) else (random.choice(["update", "update", "suspend",
                                                                                   "unsuspend"]), random.choice(users[:4]))
        step += 1
        with suppress(httpx.HTTPError):
            if action == "assign":
                await okta.assign_user(app_id, user_id)
            elif action == "unassign":
                await okta.unassign_user(app_id, user_id)
            elif action == "join":
                await okta.add_group_member(group_id, user_id)
            elif action == "leave":
                await okta.remove_group_member(group_id, user_id)
            elif action == "update":
                await okta.update_profile(user_id, {"department": random.choice(["R&D", "Ops", "Sales", "Legal"])})
            else:
                await okta.lifecycle(user_id, action)
        await asyncio.sleep(3)


async def _show(console: Console, stack: DevStack, target: TargetAdmin, stop: asyncio.Event, duration: float) -> None:
    deadline = asyncio.get_running_loop().time() + duration if duration else None
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while not stop.is_set():
            live.update(await _render(stack, target))
            if deadline and asyncio.get_running_loop().time() > deadline:
                break
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            dead = [n for n, p in stack.processes.items() if not p.alive()]
            if dead:
                console.print(f"[red]stopped unexpectedly: {', '.join(dead)}; logs in {stack.workdir}[/]")
                break


async def _render(stack: DevStack, target: TargetAdmin) -> Group:
    users = Table(title="Jira (demo SCIM 1.1 app): users", expand=True)
    for column in ("userName", "displayName", "active", "department"):
        users.add_column(column)
    with suppress(httpx.HTTPError):
        for u in sorted(await target.users(), key=lambda u: u.get("userName", "")):
            ext = u.get("urn:okta:jira:1.0:user") or {}
            users.add_row(u.get("userName", ""), u.get("displayName", ""),
                          "[green]yes[/]" if u.get("active") else "[red]no[/]", str(ext.get("department", "")))
    groups = Table(title="Jira: groups pushed from Okta", expand=True)
    for column in ("displayName", "members"):
        groups.add_column(column, overflow="fold")
    with suppress(httpx.HTTPError):
        names = {u.get("id"): u.get("userName", "") for u in await target.users()}
        for g in sorted(await target.groups(), key=lambda g: g.get("displayName", "")):
            members = sorted(names.get(m.get("value"), m.get("value")) for m in g.get("members") or [])
            groups.add_row(g.get("displayName", ""), ", ".join(members))
    trail = Table(title="audit trail (newest first)", expand=True)
    for column in ("time", "service", "step", "cause", "okta user", "detail"):
        trail.add_column(column, overflow="fold")
    with suppress(httpx.HTTPError, ValueError):
        async with httpx.AsyncClient() as http:
            items = (await http.get(f"{stack.audit_url}/audit", params={"limit": 12},
                                    headers=stack.audit_headers)).json()["items"]
        for r in items:
            trail.add_row(r["at"][11:19], r["service"], r["step"], r.get("event_type") or "",
                          r.get("okta_user_id") or "", (r.get("detail") or "")[:60])
    otel = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    where = Panel(
        f"web console: {stack.console_url}   (Sign in with Okta: {CONSOLE_ADMIN} / {CONSOLE_PASSWORD})\n"
        f"audit API: {stack.audit_url}/audit   (filters: ?user=00u…&app=0oa…&status=applied; "
        f"header Authorization: Bearer {stack.audit_token})\n"
        f"traces: {'OTLP to ' + otel + ' (open Jaeger UI)' if otel else 'export off: set OTEL_EXPORTER_OTLP_ENDPOINT (Jaeger: http://localhost:4318)'}\n"
        f"Okta simulator: {stack.okta_url}   demo app: {stack.target_url}/scim/v1/   logs: {stack.workdir}\n"
        f"health and metrics: " + "  ".join(f"{n}:{p}" for n, p in stack.metrics_ports.items()) +
        f" (/healthz /readyz /metrics); Prometheus: prometheus --config.file={stack.workdir / 'prometheus.yml'} "
        "(dashboard: deploy/grafana/dashboards/okta-bridge.json)\n"
        "Ctrl-C stops everything the demo started", title="where to look")
    return Group(where, users, groups, trail)


def _write_prometheus_config(stack: DevStack) -> None:
    """A Prometheus configuration scraping this run's services and RabbitMQ (their ports are free ones, chosen at
    start), so the Grafana dashboard can show the live demo."""
    import yaml

    from tests.harness.prometheus import Prometheus

    (stack.workdir / "prometheus.yml").write_text(yaml.safe_dump(Prometheus(stack, stack.workdir).config(),
                                                                 sort_keys=False))


def _stop_started_dependencies() -> None:
    """Stops the MongoDB-wire server / RabbitMQ that scripts/deps.sh started for this run, and nothing else."""
    run_dir = ROOT / ".run"
    pids = run_dir / "started.pids"
    if pids.exists():
        for line in pids.read_text().split():
            with suppress(ProcessLookupError, ValueError):
                os.kill(int(line), signal.SIGTERM)
        pids.unlink()
    services = run_dir / "started.services"
    if services.exists():
        if "rabbitmq" in services.read_text():
            os.system("rabbitmqctl -q stop >/dev/null 2>&1")
        services.unlink()


if __name__ == "__main__":
    sys.exit(cli())
