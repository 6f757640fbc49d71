"""A user's whole life, from Okta to a SCIM 1.1 app, with every service a real process."""

from __future__ import annotations

import asyncio
import subprocess
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually, jira_connector
from tests.harness.prometheus import Prometheus, check_compose_config, close_broker_connections, dashboard_queries

pytestmark = pytest.mark.e2e


def _by_name(users: list[dict]) -> dict[str, dict]:
    return {u["userName"].lower(): u for u in users}


async def test_initial_sync_then_changes_by_the_log(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        app_id = await okta.create_app("Jira", "jira")
        ids = {}
        for n in range(3):
            ids[n] = await okta.create_user({"login": f"user{n}@example.com", "email": f"user{n}@example.com",
                                             "firstName": f"First{n}", "lastName": f"Last{n}"})
        await okta.assign_user(app_id, ids[0], profile={"title": "Engineer"})  # an app-user profile value
        await okta.assign_user(app_id, ids[1])
        stack.write_connectors([jira_connector(stack, app_id, attribute_mappings={"title": "appProfile.title"})])
        stack.start_services()

        async def synced():
            users = _by_name(await target.users())
            return {"user0@example.com", "user1@example.com"} <= users.keys() and users
        users = await eventually(synced, what="initial sync of pre-assigned users")
        assert users["user0@example.com"]["externalId"] == ids[0]
        assert users["user0@example.com"]["active"] is True
        assert users["user0@example.com"]["title"] == "Engineer"  # from the listing

        # an event-driven update keeps appProfile.* values (the PUT replaces the whole user on this target)
        await okta.update_profile(ids[0], {"firstName": "Changed"})
        async def changed_keeping_title():
            u = _by_name(await target.users()).get("user0@example.com")
            return u and u["name"]["givenName"] == "Changed" and u
        assert (await eventually(changed_keeping_title, what="profile update of user0"))["title"] == "Engineer"
        # an app-user profile change (application.user_membership.update) reads the app user once: the new value
        await okta.update_app_user_profile(app_id, ids[0], {"title": "Manager"})
        async def retitled():
            u = _by_name(await target.users()).get("user0@example.com")
            return u and u.get("title") == "Manager"
        await eventually(retitled, what="app-user profile update")
        # a primary email change is written as user.account.update_primary_email alone
        await okta.update_primary_email(ids[0], "user0.new@example.com")
        async def new_email():
            u = _by_name(await target.users()).get("user0@example.com")
            return u and [e["value"] for e in u.get("emails", [])] == ["user0.new@example.com"] and u
        assert (await eventually(new_email, what="primary email change"))["title"] == "Manager"

        await okta.assign_user(app_id, ids[2])
        await eventually(lambda: _has(target, "user2@example.com", active=True), what="assignment by the log")

        await okta.update_profile(ids[2], {"firstName": "Renamed"})
        async def renamed():
            u = _by_name(await target.users()).get("user2@example.com")
            return u and u["name"]["givenName"] == "Renamed"
        await eventually(renamed, what="profile update")

        await okta.deactivate_user(ids[0])
        await eventually(lambda: _has(target, "user0@example.com", active=False), what="deactivation")
        await okta.reactivate_user(ids[0])
        await okta.activate_user(ids[0])
        await eventually(lambda: _has(target, "user0@example.com", active=True), what="reactivation")

        before = _by_name(await target.users())["user2@example.com"]
        await okta.change_app_username(app_id, ids[2], "u2.renamed@example.com")
        renamed_account = await eventually(
            lambda: _found(target, "u2.renamed@example.com"), what="app username change")
        assert renamed_account["id"] == before["id"], "a username change is a PUT by the stored id, not a new account"
        assert "user2@example.com" not in _by_name(await target.users())

        await okta.unassign_user(app_id, ids[1])
        await eventually(lambda: _has(target, "user1@example.com", active=False), what="unassignment")

        methods = [r["method"] for r in await target.requests()]
        assert "DELETE" not in methods
        async with httpx.AsyncClient() as http:
            trail = (await http.get(f"{stack.audit_url}/audit", params={"user": ids[2]},
                                     headers=stack.audit_headers)).json()["items"]
        steps = {r["step"] for r in trail}
        assert {"received", "planned", "applied"} <= steps
        await _health_metrics_and_dashboard(stack)


async def _health_metrics_and_dashboard(stack) -> None:
    """On this stack's traffic (issue 10, items 1, 2 and 6): every service answers ``/healthz`` and ``/readyz`` on
    its METRICS_PORT; Prometheus (Debian's package) scrapes the services and RabbitMQ, and every query of the Grafana
    dashboard returns data; a service whose broker connection is closed by the broker reports not ready within
    seconds, and ready again once it reconnected."""
    services = ("audit_recorder", "translator", "scim_dispatcher", "queue_poller")
    async with httpx.AsyncClient(timeout=5) as http:
        async def status(name: str, path: str) -> int:
            return (await http.get(stack.metrics_url(name, path))).status_code

        for name in services:
            assert await status(name, "/healthz") == 200, name
            assert (await eventually(lambda n=name: _ready(http, stack, n), 20, f"{name} ready"))["status"] == "ready"
        check_compose_config()  # deploy/prometheus/prometheus.yml, by the same package's promtool
        prometheus = Prometheus(stack, stack.workdir / "prometheus")
        prometheus.start()
        try:
            await asyncio.to_thread(prometheus.wait_scraped)
            empty = [(title, expr) for title, expr in dashboard_queries() if not prometheus.query(expr)]
            assert not empty, f"dashboard queries without data: {empty}"
        finally:
            prometheus.stop()

        # the broker drops the translator's connection and refuses it back for a while (the robust connection would
        # otherwise be back within milliseconds): /readyz answers 503 until the connection is restored
        parts = urlsplit(stack.rabbitmq_url)
        vhost, user = unquote(parts.path[1:]) or "/", parts.username or "guest"
        ctl = ["rabbitmqctl", "-q"]
        await asyncio.to_thread(subprocess.run, [*ctl, "clear_permissions", "-p", vhost, user], check=True, timeout=60)
        try:
            assert await asyncio.to_thread(close_broker_connections, stack.processes["translator"].proc.pid) >= 1
            down = await eventually(lambda: _not_ready(http, stack, "translator"), 20, "translator not ready")
            # not ready for the broker: the connection is down, or (the moment before it is seen down) the consumers'
            # channel the broker closed with it
            assert down["checks"]["rabbitmq"] != "connected" or down["checks"]["consumers"].startswith("0/"), down
        finally:
            await asyncio.to_thread(subprocess.run, [*ctl, "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
                                    check=True, timeout=60)
        await eventually(lambda: _ready(http, stack, "translator"), 60, "translator ready again after reconnecting")


async def _not_ready(http: httpx.AsyncClient, stack, name: str) -> dict | None:
    answer = await http.get(stack.metrics_url(name, "/readyz"))
    return answer.json() if answer.status_code == 503 else None


async def _ready(http: httpx.AsyncClient, stack, name: str) -> dict | None:
    answer = await http.get(stack.metrics_url(name, "/readyz"))
    return answer.json() if answer.status_code == 200 else None


async def _found(target: TargetAdmin, user_name: str) -> dict | None:
    return _by_name(await target.users()).get(user_name)


async def _has(target: TargetAdmin, user_name: str, active: bool) -> bool:
    user = _by_name(await target.users()).get(user_name)
    return bool(user) and user.get("active") is active
