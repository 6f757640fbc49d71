"""``bridgectl preview USER --app APP`` and ``bridgectl provision USER --app APP``: one user, now.

**preview** shows the SCIM requests the bridge would send now, built by the bridge's own code: the state table
(``translator.state_table.decide``) and the mapping (``translator.mapping.map_user``) from Okta's current state (the
user, and the app user: assigned or not, its username and profile; read-only calls, through the same rate-limit
aware client), then the dispatcher's ``Dispatcher.apply`` against the target through a dry-run transport: reads
(``GET``) reach the target, writes are recorded and answered as the target would, never sent. Nothing is stored (no
plan version is taken, no link written). The password is shown as ``***`` and the credentials not at all.

**provision** applies it through the normal pipeline: a "look at this (app, user) again" event for the translator
(as a dead-letter replay), so the change is planned with a new version, ordered on its partition, audited and
traced like any other; then it follows the audit trail of the key for ``--wait`` seconds and prints each step.
USER is an Okta user id or login; APP a connector name or Okta app id.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import typer

from bridgectl.common import CONNECTORS, JSON, OPERATOR, bad_input, console, emit, load, operator_name, resolve_app
from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import AuditStep, Reason, ScimOperationPlanned, is_okta_id
from okta_bridge.redact import mask_secrets

APP_OPT = typer.Option(..., "--app", help="the app's connector name or Okta app id")
USER_ARG = typer.Argument(..., help="Okta user id (00u…) or login")
MASKED = "***"


# ------------------------------------------------------------------ names to ids

class UnknownUser(LookupError):
    """The user named is not in Okta (the message never echoes the login)."""


async def resolve_user(okta, user: str) -> str:
    """An Okta user id as given, or the id of the user with this login; unknown: :class:`UnknownUser`."""
    from okta_bridge.okta_client import OktaNotFoundError

    try:
        page = await okta.get(f"/api/v1/users/{quote(user, safe='@.+-_')}")
    except OktaNotFoundError:
        raise UnknownUser("no such Okta user (give an Okta user id, 00u…, or an exact login)") from None
    found = page.body if isinstance(page.body, dict) else {}
    if not is_okta_id(found.get("id")):
        raise UnknownUser("Okta answered the user lookup without a user id")
    return found["id"]


def _or_exit(coroutine):
    """Runs an operator coroutine; an unknown user is bad input (exit 2)."""
    try:
        return asyncio.run(coroutine)
    except UnknownUser as exc:
        bad_input(str(exc))


def user_ids(users: list[str] | None) -> list[str] | None:
    """Okta user ids as given; logins looked up in Okta (read-only); unknown: exit 2."""
    if not users or all(is_okta_id(u) for u in users):
        return users

    async def lookup() -> list[str]:
        from bridgectl.bus import okta_client

        async with okta_client() as okta:
            return [u if is_okta_id(u) else await resolve_user(okta, u) for u in users]
    return _or_exit(lookup())


# ------------------------------------------------------------------ the dry-run transport

class DryRun(httpx.AsyncBaseTransport):
    """Reads go to the target through the app's own client (its TLS settings); writes are recorded, not sent, and
    answered as a SCIM target would (the body back, with an id for a create)."""

    def __init__(self, real: httpx.AsyncClient) -> None:
        self.real, self.sent, self.recorded = real, [], []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        if request.method == "GET":
            resp = await self.real.send(httpx.Request("GET", request.url, headers=request.headers))
            content = await resp.aread()
            self.sent.append({"method": "GET", "path": _path(request), "status": resp.status_code})
            return httpx.Response(resp.status_code, headers={k: v for k, v in resp.headers.items()
                                                             if k.lower() not in ("content-encoding",
                                                                                  "transfer-encoding")},
                                  content=content)
        self.recorded.append({"method": request.method, "path": _path(request), "body": _masked(body)})
        answer = dict(body or {}) if isinstance(body, dict) else {}
        if request.method == "POST":
            answer.setdefault("id", "preview-not-created")
            return httpx.Response(201, json=answer, headers={"content-type": "application/scim+json"})
        return httpx.Response(200, json=answer, headers={"content-type": "application/scim+json"})


def _path(request: httpx.Request) -> str:
    return request.url.raw_path.decode()


def _masked(body: Any) -> Any:
    """The password as ``***``; any registered secret masked too."""
    if isinstance(body, dict):
        return {k: (MASKED if k.lower() == "password" else _masked(v)) for k, v in body.items()}
    if isinstance(body, list):
        return [_masked(v) for v in body]
    return mask_secrets(body) if isinstance(body, str) else body


# ------------------------------------------------------------------ preview

async def plan_now(app: AppConnector, user_id: str, okta, version: int, org: str) -> tuple[ScimOperationPlanned | None,
                                                                                           str]:
    """The plan the translator would make now from Okta's state (no version taken: ``version`` is shown)."""
    from okta_bridge.okta_client import OktaNotFoundError
    from translator.mapping import map_user
    from translator.state_table import decide

    user = (await okta.get_users([user_id]))[user_id]  # None: gone (404)
    try:
        app_user = await okta.get_app_user(app.okta_app_id, user_id)
        assigned = True
    except OktaNotFoundError:
        app_user, assigned = {}, False
    decision = decide(user.get("status") if user else None, assigned, app)
    if decision.action is None:
        return None, decision.reason
    username = (app_user.get("credentials") or {}).get("userName")
    attrs, unique = map_user(app, user or {"id": user_id, "profile": {}}, username, app_user.get("profile"))
    return ScimOperationPlanned(org=org, app_id=app.okta_app_id, okta_user_id=user_id, version=version,
                                action=decision.action, attributes=attrs, unique_value=unique,
                                cause="operator:preview"), decision.reason


def preview(user: str = USER_ARG, app: str = APP_OPT, connectors_file: str = CONNECTORS, json_: bool = JSON) -> None:
    """The SCIM requests the bridge would send now for this user (read-only: nothing is sent or stored)."""
    connector = resolve_app(load(connectors_file, secrets=True), app)
    result = _or_exit(_preview(connector, user))

    def render() -> None:
        c = console()
        c.print(f"[bold]{connector.name}[/] user {result['user']}: {result['decision']}", highlight=False)
        for r in result["reads"]:
            c.print(f"  read  {r['method']} {r['path']} -> {r['status']}", highlight=False)
        for w in result["would_send"]:
            c.print(f"  [bold]would send[/] {w['method']} {w['path']}", highlight=False)
            c.print("    " + json.dumps(w["body"], indent=2, sort_keys=True).replace("\n", "\n    "), highlight=False)
        if not result["would_send"]:
            c.print(f"  nothing would be sent ({result['outcome']})", highlight=False)
    emit(json_, result, render)


async def _preview(app: AppConnector, user: str) -> dict[str, Any]:
    from bridgectl.bus import mongo, okta_client
    from okta_bridge.settings import OktaSettings
    from okta_bridge.stores.assignments import MongoAssignments
    from okta_bridge.stores.links import MongoLinks
    from scim_dispatcher.adapters.scim_client import ScimClient
    from scim_dispatcher.adapters.scim_errors import ScimError
    from scim_dispatcher.adapters.traced_http import app_clients
    from scim_dispatcher.handlers import Dispatcher

    settings = OktaSettings()
    async with okta_client(settings=settings) as okta:
        user_id = user if is_okta_id(user) else await resolve_user(okta, user)
        async with mongo() as db:
            row = (await MongoAssignments(db, settings.org_url).read_rows([(app.okta_app_id, user_id)]))[
                (app.okta_app_id, user_id)]
            plan, why = await plan_now(app, user_id, okta, row.version + 1, settings.org_url)
            out: dict[str, Any] = {"app": app.name, "user": user_id, "decision": why, "reads": [], "would_send": [],
                                   "plan": None, "outcome": None}
            if plan is None:
                out["outcome"] = "the state table sends nothing"
                return out
            out["plan"] = {"action": plan.action.value, "version": plan.version, "unique_value": plan.unique_value,
                           "attributes": {a.path: a.value for a in plan.attributes}}
            links = MongoLinks(db, settings.org_url)
            link = await links.get(app.okta_app_id, user_id)
            real = app_clients([app], 2)[app.okta_app_id]
            dry = DryRun(real)
            try:
                client = ScimClient(httpx.AsyncClient(transport=dry), app.base_url, app.version,
                                    headers=app.auth_headers(), timeout_s=app.timeout_s,
                                    unique_field=app.unique_user_field, deactivate_with=app.deactivate_with,
                                    content_type=app.content_type, send_if_match=app.send_if_match,
                                    max_response_bytes=app.max_response_bytes)
                try:
                    outcome = await Dispatcher({app.okta_app_id: app}, {app.okta_app_id: client}, links).apply(
                        plan, link)
                    out["outcome"] = f"{outcome.step.value}: {outcome.detail}"
                except ScimError as exc:
                    out["outcome"] = f"the target would fail it: {exc.message}"
            finally:
                await real.aclose()
            out["reads"], out["would_send"] = dry.sent, dry.recorded
            return out


# ------------------------------------------------------------------ provision

DONE = frozenset({AuditStep.APPLIED, AuditStep.SKIPPED, AuditStep.SKIPPED_STALE, AuditStep.HELD,
                  AuditStep.DEAD_LETTERED, AuditStep.FAILED})  # the dispatcher's outcomes of the change
TRANSLATOR_DONE = frozenset({AuditStep.SKIPPED, AuditStep.HELD})  # the translator's ends: nothing was planned
SUCCEEDED = frozenset({AuditStep.APPLIED, AuditStep.SKIPPED, AuditStep.SKIPPED_STALE})


def provision(user: str = USER_ARG, app: str = APP_OPT,
              wait: float = typer.Option(20.0, "--wait", min=0, help="seconds to follow the audit trail (0: do not)"),
              operator: str = OPERATOR, connectors_file: str = CONNECTORS, json_: bool = JSON) -> None:
    """Apply it now through the normal pipeline (ordered, audited, traced); then follow the audit trail."""
    connector = resolve_app(load(connectors_file), app)
    result = _or_exit(_provision(connector, user, operator_name(operator), wait, json_))
    emit(json_, result, lambda: typer.echo(f"{connector.name} {result['user']}: {result['outcome']}"))
    raise typer.Exit(0 if result["ok"] else 1)


async def _provision(app: AppConnector, user: str, by: str, wait: float, as_json: bool,
                     service: str = "operator-cli") -> dict[str, Any]:
    from bridgectl.bus import mongo, okta_client, operator_bus
    from okta_bridge.deadletters import look_again
    from okta_bridge.settings import OktaSettings
    from okta_bridge.stores.audit import AuditStore

    settings = OktaSettings()
    if is_okta_id(user):
        user_id = user
    else:
        async with okta_client(settings=settings) as okta:
            user_id = await resolve_user(okta, user)
    started = datetime.now(UTC)
    async with operator_bus(service) as (publisher, audit):
        async with audit.batch():
            exchange, routing_key, event = look_again(settings.org_url, app.okta_app_id, user_id)
            await publisher.publish(event, exchange=exchange, routing_key=routing_key)
            await audit.record(AuditStep.RECEIVED, reason=Reason.OPERATOR, app_id=app.okta_app_id,
                               okta_user_id=user_id, event_uuid=event.event_uuid, event_type="operator:provision",
                               actor=by[:200], detail=f"provision on demand requested by {by}")
    out: dict[str, Any] = {"app": app.name, "user": user_id, "event": event.event_uuid, "steps": [], "ok": wait <= 0,
                           "outcome": "requested (not followed)"}
    if wait <= 0:
        return out
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    async with mongo() as db:
        store = AuditStore(db)
        while loop.time() < deadline:
            items, _ = await store.page({"okta_user_id": user_id, "app_id": app.okta_app_id}, started, None, 200,
                                        None)
            for item in reversed(items):
                if item["id"] in seen:
                    continue
                seen.add(item["id"])
                step = {k: item.get(k) for k in ("at", "service", "step", "reason", "plan_version", "scim_method",
                                                  "scim_status", "detail")}
                out["steps"].append(step)
                if not as_json:
                    typer.echo(f"  {item['at']:%H:%M:%S} {item['service']:<16} {item['step']:<14} "
                               f"{item.get('detail') or ''}")
                if item["service"] == "scim-dispatcher" and item["step"] in DONE or \
                        item["service"] == "translator" and item["step"] in TRANSLATOR_DONE:
                    out["ok"] = item["step"] in SUCCEEDED
                    out["outcome"] = f"{item['step']}: {item.get('detail') or ''}"
                    return out
            await asyncio.sleep(0.5)
    out["outcome"] = f"no outcome within {wait:g} s (is the bridge running? follow it with bridgectl audit " \
                     f"--user {user_id} --follow)"
    return out
