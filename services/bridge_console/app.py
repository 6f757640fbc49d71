"""The console's routes (FastAPI, server-rendered Jinja2 pages, autoescaped).

GET pages need a session (or a bearer token): without one a browser is sent to ``/login``; every other method
without one is answered 401, and an action by a viewer 403, before anything is done. Actions are form posts with the
session's CSRF token. Bad filters are answered 400 with the reason.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, HTTPException, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.middleware.trustedhost import TrustedHostMiddleware

from bridgectl.oneuser import UnknownUser
from bridge_console.auth import Oidc, OidcError, Principal, RateLimit, Sessions, pkce_pair, principal_of_token
from bridge_console.data import Reader
from bridge_console.settings import ConsoleSettings
from okta_bridge.apiauth import ApiTokens
from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import AuditStep, is_okta_id
from okta_bridge.deadletters import Fate
from okta_bridge.redact import error_text

__all__ = ["Actions", "create_app"]

log = logging.getLogger("console")
HERE = Path(__file__).parent
SESSION_COOKIE, LOGIN_COOKIE, PRE_COOKIE = "bridge_console", "bridge_console_login", "bridge_console_pre"
MAX_PAGE = 500
LOGIN = re.compile(r"[^/\\\s?#%]{1,100}")  # an Okta login as a path segment: no separators, not only dots
DONE = {"released": "held deactivation(s) released (planned again from Okta now)",
        "discarded": "held deactivation(s) discarded", "replayed": "dead letter(s) replayed"}
TRACE_ID = re.compile(r"[0-9a-f]{32}")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self' "
                               "{issuer}; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class OneUserForm:
    """A preview's or provision's form, checked: who asks, for which app and user."""

    caller: Principal
    connector: AppConnector
    user: str  # an Okta user id or a login
    form: dict[str, str]


@dataclass(frozen=True)
class AuditQuery:
    """The audit page's query, checked."""

    filters: dict[str, Any]
    since: datetime | None
    until: datetime | None
    limit: int


class Actions:
    """What the console does, behind one seam (the tests of the routes' refusals replace it; the end-to-end tests
    use this one, on the real broker, database, Okta simulator and target)."""

    def __init__(self, reader: Reader, rabbitmq_url: str) -> None:
        self.reader, self.rabbitmq_url = reader, rabbitmq_url

    async def preview(self, app, user: str) -> dict[str, Any]:
        from bridgectl.oneuser import _preview

        return await _preview(app, user)

    async def provision(self, app, user: str, by: str) -> dict[str, Any]:
        from bridgectl.oneuser import _provision

        return await _provision(app, user, by, 0, True, service="console")

    async def dead_letters(self) -> list:
        from okta_bridge.deadletters import DeadLetters

        return await DeadLetters(self.rabbitmq_url, self.reader.org, "console", "console").list(200)

    async def replay(self, ids: set[str], by: str) -> list:
        from okta_bridge.deadletters import DeadLetters

        return await DeadLetters(self.rabbitmq_url, self.reader.org, by, "console").take(
            ids, self.reader.connectors, "replay")

    async def guard(self, action: str, app_id: str, users: list[str] | None, by: str):
        from bridgectl.guard import _apply

        return await _apply(action, app_id, users, by, service="console")


def create_app(cfg: ConsoleSettings, tokens: ApiTokens, allowed_hosts: list[str], sessions: Sessions,
               reader: Reader, actions: Actions, limit: RateLimit, oidc: Oidc | None,
               lifespan: Any = None) -> FastAPI:
    app = FastAPI(title="okta-onprem-bridge console", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost"])
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["when"] = lambda at: "" if at is None else f"{_utc(at):%Y-%m-%d %H:%M:%S}"
    env.globals["trace_url"] = lambda trace_id: cfg.trace_url_template.replace("{trace_id}", trace_id or "")
    issuer_origin = ""
    if oidc is not None:
        parts = urlsplit(oidc.issuer)
        issuer_origin = f"{parts.scheme}://{parts.netloc}"
    headers = {k: v.replace("{issuer}", issuer_origin).strip() for k, v in SECURITY_HEADERS.items()}
    # over https the cookies are __Host- cookies (Secure, Path=/, no Domain): a sibling host cannot plant one
    prefix = "__Host-" if cfg.secure_cookies else ""
    session_cookie, login_cookie, pre_cookie = (prefix + n for n in (SESSION_COOKIE, LOGIN_COOKIE, PRE_COOKIE))

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for k, v in headers.items():
            response.headers.setdefault(k, v)
        return response

    def page(request: Request, template: str, who: Principal | None, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(request=request, who=who, oidc=oidc is not None, **context)
        return HTMLResponse(html, status_code=status)

    def cookie(response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                            secure=cfg.secure_cookies)

    def done_note(done: str | None) -> str | None:
        """What an action did, from the redirect's ``done=<code>:<count>`` (a fixed text: a link cannot put words
        on the console's pages)."""
        found = re.fullmatch(r"([a-z]+):(\d{1,6})(?::(\d{1,6}))?", done or "")
        if not found or found[1] not in DONE:
            return None
        return f"{found[2]}{' of ' + found[3] if found[3] else ''} {DONE[found[1]]}"

    async def attempt(what: str, work: Awaitable[Any], personal: tuple[str, ...] = ()) -> Any:
        """An action on the broker, Okta or a target: a failure is a 502 with a bounded, masked reason (never a
        traceback or a person's value)."""
        try:
            return await work
        except (HTTPException, UnknownUser):
            raise
        except Exception as exc:  # noqa: BLE001
            log.warning("%s failed: %s", what, type(exc).__name__)
            raise HTTPException(502, f"{what} failed: {error_text(f'{type(exc).__name__}: {exc}', personal)}") \
                from None

    async def who(request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = tokens.check(header[7:].strip())
            return principal_of_token(token) if token else None
        return await sessions.get(request.cookies.get(session_cookie), tokens)

    async def viewer(request: Request) -> Principal:
        """A GET page's caller; none: a browser goes to sign in, anything else gets 401."""
        found = await who(request)
        if found is None:
            if "authorization" in request.headers or "text/html" not in request.headers.get("accept", ""):
                raise HTTPException(401, "sign in, or send a valid bearer token", {"WWW-Authenticate": "Bearer"})
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise HTTPException(303, headers={"Location": "/login?" + urlencode({"next": _local(here)})})
        return found

    async def actor(request: Request, admin: bool) -> tuple[Principal, dict[str, str]]:
        """A form post's caller: signed in (401), an admin when ``admin`` (403), and the session's CSRF token in the
        form with an Origin of the console's own (403). Returns the form too."""
        found = await who(request)
        if found is None:
            raise HTTPException(401, "sign in, or send a valid bearer token", {"WWW-Authenticate": "Bearer"})
        form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
        if found.via != "token" or found.csrf:  # a cookie session: the post must be the console's own form
            origin = request.headers.get("origin")
            if origin is not None and origin != cfg.origin:
                raise HTTPException(403, "the request does not come from the console's own pages")
            if not hmac.compare_digest(form.get("csrf", ""), found.csrf):
                raise HTTPException(403, "the form's CSRF token is missing or not this session's: reload the page")
        if admin and not found.admin:
            raise HTTPException(403, f"{found.name} is a viewer: only an admin may do this")
        return found, form

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in (302, 303):
            return RedirectResponse(exc.headers["Location"], exc.status_code)
        caller = await who(request) if exc.status_code != 401 else None
        response = page(request, "error.html", caller, exc.status_code, message=str(exc.detail))
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    # ------------------------------------------------------------------ sign-in

    @app.get("/login", response_class=HTMLResponse)
    async def login(request: Request, next: str = "/") -> Response:
        pre = secrets.token_urlsafe(24)
        response = page(request, "login.html", None, 200, next=_local(next), pre=pre, error=None)
        cookie(response, pre_cookie, pre, 900)
        return response

    @app.post("/login/token")
    async def login_token(request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).multi_items() if isinstance(v, str)}
        if not hmac.compare_digest(form.get("pre", ""), request.cookies.get(pre_cookie, "") or "-"):
            raise HTTPException(403, "the sign-in form expired: load it again")
        token = tokens.check(form.get("token", "").strip())
        if token is None:
            return page(request, "login.html", None, 401, next=_local(form.get("next", "/")), pre=form.get("pre"),
                        error="that token is not valid")
        principal = principal_of_token(token)
        sid, _ = await sessions.open(principal.name, principal.role, "token", token.digest)
        log.info("console sign-in with the token of %s (%s)", principal.name, principal.role)
        response = RedirectResponse(_local(form.get("next", "/")), 303)
        cookie(response, session_cookie, sid, cfg.session_ttl_s)
        return response

    @app.get("/login/okta")
    async def login_okta(next: str = "/") -> Response:
        if oidc is None:
            raise HTTPException(404, "sign-in with Okta is not configured (CONSOLE_OIDC_CLIENT_ID)")
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        try:
            url = await oidc.authorize_url(state, nonce, challenge)
        except OidcError as exc:
            raise HTTPException(502, str(exc)) from None
        await sessions.start_login(state, verifier, nonce, _local(next))
        response = RedirectResponse(url, 302)
        cookie(response, login_cookie, state, 600)
        return response

    @app.get("/oidc/callback")
    async def callback(request: Request, code: str | None = None, state: str | None = None,
                       error: str | None = None, error_description: str | None = None) -> Response:
        if oidc is None:
            raise HTTPException(404, "sign-in with Okta is not configured")
        started = request.cookies.get(login_cookie)
        if not state or not started or not hmac.compare_digest(started, state):
            raise HTTPException(400, "this sign-in was not started in this browser: start again from the sign-in page")
        if error:  # Okta's answer to this browser's own sign-in: its code only (a link cannot put text here)
            await sessions.take_login(state)
            raise HTTPException(400, f"Okta did not sign you in ({re.sub(r'[^a-z_]', '', error)[:40]}): start "
                                     "again from the sign-in page")
        if not code:
            raise HTTPException(400, "the callback has no code: start again from the sign-in page")
        login_ = await sessions.take_login(state)
        if login_ is None:
            raise HTTPException(400, "this sign-in was already used or has expired: start again from the sign-in page")
        try:
            claims = await oidc.redeem(code, login_["verifier"], login_["nonce"])
        except OidcError as exc:
            raise HTTPException(400, str(exc)) from None
        role = oidc.role(claims, cfg.groups("admin"), cfg.groups("viewer"))
        name = str(claims.get("preferred_username") or claims.get("email") or claims["sub"])[:200]
        if role is None:
            log.warning("console sign-in refused: not in a console group")
            groups = ", ".join(sorted(cfg.groups("admin") | cfg.groups("viewer")))
            raise HTTPException(403, f"{name} is in none of the console's groups ({groups})")
        sid, _ = await sessions.open(name, role, "okta")
        log.info("console sign-in with Okta (%s)", role)
        response = RedirectResponse(login_["next"], 303)
        cookie(response, session_cookie, sid, cfg.session_ttl_s)
        response.delete_cookie(login_cookie, path="/", secure=cfg.secure_cookies, httponly=True)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await actor(request, admin=False)
        await sessions.close(request.cookies.get(session_cookie))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(session_cookie, path="/", secure=cfg.secure_cookies, httponly=True)
        return response

    # ------------------------------------------------------------------ pages

    @app.get("/")
    async def home(request: Request) -> Response:
        await viewer(request)
        return RedirectResponse("/apps", 303)

    @app.get("/apps", response_class=HTMLResponse)
    async def apps(request: Request) -> Response:
        caller = await viewer(request)
        return page(request, "apps.html", caller, apps=await reader.apps())

    @app.get("/apps/{name}", response_class=HTMLResponse)
    async def app_page(request: Request, name: str, done: str | None = None) -> Response:
        caller = await viewer(request)
        connector = reader.app(name)
        if connector is None:
            raise HTTPException(404, "no such app in the connectors file")
        info = next(a for a in await reader.apps() if a["app_id"] == connector.okta_app_id)
        held = await reader.guards.held(connector.okta_app_id) if info["guard"] else []
        recent, _ = await reader.audit.page({"app_id": connector.okta_app_id}, None, None, 20, None)
        return page(request, "app.html", caller, app=info, held=held, recent=recent, done=done_note(done))

    @app.post("/apps/{name}/guard/{action}")
    async def guard_action(request: Request, name: str, action: str) -> Response:
        caller, form = await actor(request, admin=True)
        connector = reader.app(name)
        if connector is None or action not in ("release", "discard"):
            raise HTTPException(404, "no such app or action")
        users = [u for u in form.get("users", "").split(",") if u.strip()] or None
        if users and not all(is_okta_id(u.strip()) for u in users):
            raise HTTPException(400, "users: Okta user ids (00u…), comma-separated")
        if action == "discard" and form.get("confirm") != "yes":
            raise HTTPException(400, "tick the box to confirm: discarded deactivations are never sent")
        done = await attempt(f"the guard's {action}", actions.guard(
            action, connector.okta_app_id, [u.strip() for u in users] if users else None, caller.actor))
        if done is None:
            raise HTTPException(400, f"the guard of {connector.name} is not set: nothing is held")
        code = "released" if action == "release" else "discarded"
        return RedirectResponse(f"/apps/{connector.name}?" + urlencode({"done": f"{code}:{len(done)}"}), 303)

    @app.get("/audit", response_class=HTMLResponse)
    async def audit(request: Request) -> Response:
        caller = await viewer(request)
        q = request.query_params
        query = _audit_filters(q, reader)
        try:
            items, token = await reader.audit.page(query.filters, query.since, query.until, query.limit,
                                                   q.get("after") or None)
        except (ValueError, OverflowError):
            raise HTTPException(400, "after: not a page token this console made") from None
        more = None
        if token:
            more = "/audit?" + urlencode({**{k: v for k, v in q.items() if k != "after" and v}, "after": token})
        return page(request, "audit.html", caller, items=items, q=q, more=more, names=reader.app_names(),
                    apps=reader.connectors.apps, steps=[s.value for s in AuditStep], limit=query.limit)

    @app.get("/changes/{trace_id}", response_class=HTMLResponse)
    async def change(request: Request, trace_id: str) -> Response:
        caller = await viewer(request)
        if not TRACE_ID.fullmatch(trace_id):
            raise HTTPException(400, "a trace id is 32 lower-case hex digits")
        steps = await reader.audit.timeline(trace_id)
        if not steps:
            raise HTTPException(404, "no audit record of this trace (it may be older than the retention)")
        first = _utc(steps[0]["at"])
        previous = first
        for s in steps:
            at = _utc(s["at"])
            s["offset_ms"] = (at - first).total_seconds() * 1000
            s["since_previous_ms"] = (at - previous).total_seconds() * 1000
            previous = at
        total = (_utc(steps[-1]["at"]) - first).total_seconds() * 1000
        return page(request, "change.html", caller, steps=steps, trace_id=trace_id, total_ms=total,
                    names=reader.app_names())

    @app.get("/dead-letters", response_class=HTMLResponse)
    async def dead_letters(request: Request, done: str | None = None) -> Response:
        caller = await viewer(request)
        letters = await attempt("reading the dead letters", actions.dead_letters())
        return page(request, "dead_letters.html", caller, letters=letters, done=done_note(done),
                    names=reader.app_names())

    @app.post("/dead-letters/replay")
    async def replay(request: Request) -> Response:
        caller, form = await actor(request, admin=True)
        ids = {i for i in (await request.form()).getlist("id") if isinstance(i, str) and i}
        if not ids:
            raise HTTPException(400, "choose at least one dead letter")
        results = await attempt("the replay", actions.replay(ids, caller.actor))
        replayed = sum(1 for t in results if t.fate is Fate.REPLAYED)
        return RedirectResponse("/dead-letters?" + urlencode({"done": f"replayed:{replayed}:{len(ids)}"}), 303)

    @app.get("/users", response_class=HTMLResponse)
    async def one_user(request: Request) -> Response:
        caller = await viewer(request)
        return page(request, "user.html", caller, apps=reader.connectors.apps, result=None, form={})

    async def _one_user_form(request: Request, admin: bool) -> OneUserForm:
        caller, form = await actor(request, admin)
        connector = reader.app(form.get("app", ""))
        user = form.get("user", "").strip()
        if connector is None:
            raise HTTPException(400, "choose an app of the connectors file")
        if not (is_okta_id(user) or (LOGIN.fullmatch(user) and user.strip("."))):
            raise HTTPException(400, "give an Okta user id (00u…) or a login")
        wait = await limit.take()
        if wait is not None:
            raise HTTPException(429, f"at most {cfg.actions_per_minute} previews and provisions a minute "
                                     f"(CONSOLE_ACTIONS_PER_MINUTE): try again in {wait} s", {"Retry-After": str(wait)})
        low = await reader.budget_problem(cfg.okta_reserve)
        if low:
            raise HTTPException(429, low, {"Retry-After": "60"})
        return OneUserForm(caller=caller, connector=connector, user=user, form=form)

    @app.post("/users/preview", response_class=HTMLResponse)
    async def preview(request: Request) -> Response:
        asked = await _one_user_form(request, admin=False)
        try:
            result = await attempt("the preview", actions.preview(asked.connector, asked.user), (asked.user,))
        except UnknownUser as exc:
            raise HTTPException(400, str(exc)) from None
        return page(request, "user.html", asked.caller, apps=reader.connectors.apps, result=result, form=asked.form)

    @app.post("/users/provision")
    async def provision(request: Request) -> Response:
        asked = await _one_user_form(request, admin=True)
        try:
            result = await attempt("the provision", actions.provision(asked.connector, asked.user, asked.caller.actor),
                                   (asked.user,))
        except UnknownUser as exc:
            raise HTTPException(400, str(exc)) from None
        log.info("provision on demand of a user of %s (%s)", asked.connector.name, asked.caller.role)  # no name
        return RedirectResponse("/audit?" + urlencode({"user": result["user"], "app": asked.connector.name,
                                                       "requested": "1"}), 303)

    return app


def _audit_filters(q, reader: Reader) -> AuditQuery:
    """The audit page's query, validated: 400 with the reason for anything that is not what it should be."""
    filters: dict[str, Any] = {}
    for param, field in (("user", "okta_user_id"), ("group", "okta_group_id")):
        value = (q.get(param) or "").strip()
        if value:
            if not is_okta_id(value):
                raise HTTPException(400, f"{param}: an Okta id is 20 letters and digits (00u…, 00g…)")
            filters[field] = value
    app_value = (q.get("app") or "").strip()
    if app_value:
        connector = reader.app(app_value)
        if connector is None and not is_okta_id(app_value):
            raise HTTPException(400, "app: a connector name or an Okta app id (0oa…)")
        filters["app_id"] = connector.okta_app_id if connector else app_value
    status = (q.get("status") or "").strip()
    if status:
        try:
            filters["step"] = AuditStep(status).value
        except ValueError:
            raise HTTPException(400, f"status: one of {', '.join(s.value for s in AuditStep)}") from None
    event = (q.get("event") or "").strip()
    if event:
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", event):
            raise HTTPException(400, "event: a System Log event uuid")
        filters["event_uuid"] = event
    trace_id = (q.get("trace") or "").strip()
    if trace_id:
        if not TRACE_ID.fullmatch(trace_id):
            raise HTTPException(400, "trace: 32 lower-case hex digits")
        filters["trace_id"] = trace_id
    since, until = _when(q.get("since"), "since"), _when(q.get("until"), "until")
    if since and until and since >= until:
        raise HTTPException(400, "since must be before until")
    try:
        limit = int(q.get("limit") or 50)
    except ValueError:
        raise HTTPException(400, "limit: a number") from None
    if not 1 <= limit <= MAX_PAGE:
        raise HTTPException(400, f"limit: between 1 and {MAX_PAGE}")
    return AuditQuery(filters=filters, since=since, until=until, limit=limit)


def _when(value: str | None, name: str) -> datetime | None:
    """A date or date-time (ISO 8601; UTC when no offset), or ``-15m`` / ``-2h`` / ``-7d`` from now."""
    value = (value or "").strip()
    if not value:
        return None
    relative = re.fullmatch(r"-(\d{1,5})([mhd])", value)
    if relative:
        n, unit = int(relative[1]), relative[2]
        return datetime.now(UTC) - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: n})
    try:
        at = datetime.fromisoformat(value)
        at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise HTTPException(400, f"{name}: not a date (2026-12-06, 2026-12-06T10:00, or -15m / -2h / -7d)") from None
    if not 1970 <= at.year <= 9998:
        raise HTTPException(400, f"{name}: a date between 1970 and 9998")
    return at


_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9._~/?=&%+:,@-]*")


def _local(path: str | None) -> str:
    """A redirect target that stays on the console: a path of plain characters, never ``//host`` (nor what a
    browser would read as one once it drops tabs and line breaks)."""
    if not path or not _LOCAL_PATH.fullmatch(path) or "//" in path.split("?")[0]:
        return "/"
    return path[:500]


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
