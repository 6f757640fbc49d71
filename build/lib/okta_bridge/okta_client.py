"""Okta Management API client: SSWS or OAuth 2.0 auth (:mod:`okta_bridge.okta_auth`), `Link` pagination, and
rate-limit budgets read from Okta's headers.

Errors::

    OktaError
    ├── OktaTransientError      429, 5xx, timeouts, network: retry later (``retry_after_s`` when Okta says)
    │   └── OktaBadAnswerError  a 2xx the bridge cannot read (not JSON, an empty body, an object where a list
    │                           belongs, a user without id or a documented status): never read as "gone"
    ├── OktaAuthError           401/403: the token is wrong or lacks a scope
    ├── OktaNotFoundError       404: the user / app user no longer exists
    └── OktaRequestError        other 4xx (``OktaCursorRejectedError`` for a rejected System Log cursor)

Budgets: Okta's per-minute buckets are shared by every replica and every service using the token, so the
authoritative count is ``X-Rate-Limit-Remaining`` on each answer, with ``X-Rate-Limit-Reset`` timed against the
answer's ``Date`` (not the local clock). Before each call the client waits for the window's reset when the bucket's
remaining calls are down to its reserve, so a normal run never receives a 429.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from datetime import UTC, datetime
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
from opentelemetry import trace

from okta_bridge.contracts import Reason
from okta_bridge.http import TlsSettings, describe_transport_error, pooled_transport
from okta_bridge.metrics import OKTA_RATE_LIMIT_REMAINING, OKTA_RATE_LIMIT_WAITS
from okta_bridge.okta_auth import OktaAuth, SswsAuth
from okta_bridge.redact import error_text
from okta_bridge.telemetry import ATTR

__all__ = [
    "USER_STATUSES",
    "OktaAuthError",
    "OktaBadAnswerError",
    "OktaClient",
    "OktaCursorRejectedError",
    "OktaError",
    "OktaNotFoundError",
    "OktaPage",
    "OktaRequestError",
    "OktaTransientError",
    "bucket_for",
    "describe",
    "user_problem",
]

log = logging.getLogger(__name__)
tracer = trace.get_tracer("okta_bridge.okta_client")
_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?([a-z]+)"?')
# Okta's user statuses (the management API's ``UserStatus``); any other (``ACTIVATING`` is a passing one) is read
# again later rather than guessed at
USER_STATUSES = frozenset({"ACTIVE", "DEPROVISIONED", "LOCKED_OUT", "PASSWORD_EXPIRED", "PROVISIONED", "RECOVERY",
                           "STAGED", "SUSPENDED"})
_WORD = re.compile(r"[A-Z][A-Z_]{0,31}")


class OktaError(Exception):
    code = Reason.OKTA_REJECTED  # the reason code the outcome policy acts on (okta_bridge.outcomes)

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(error_text(message))  # one bounded line, secrets and emails masked (okta_bridge.redact)
        self.status = status


class OktaTransientError(OktaError):
    def __init__(self, message: str, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after_s = retry_after_s

    @property
    def code(self) -> Reason:  # type: ignore[override]
        return Reason.OKTA_RATE_LIMITED if self.status == 429 else Reason.OKTA_TRANSIENT


class OktaBadAnswerError(OktaTransientError):
    """Okta answered, but not with what the call reads. Transient: retried by the outcome policy; only a 404 means
    a user is gone. The message says what was wrong, never the answer's values (they may hold a person's data)."""


class OktaAuthError(OktaError):
    code = Reason.OKTA_AUTH


class OktaNotFoundError(OktaError):
    pass


class OktaRequestError(OktaError):
    pass


class OktaCursorRejectedError(OktaRequestError):
    pass


def bucket_for(method: str, path: str) -> str:
    """The rate-limit endpoint group of a request (brief, section 3)."""
    parts = [p for p in path.split("?")[0].split("/") if p]  # api, v1, x, ...
    if parts[2:3] == ["logs"]:
        return "logs"
    if parts[2:3] == ["apps"]:
        return "app" if len(parts) == 4 else "apps"
    if parts[2:3] == ["users"]:
        return "user" if len(parts) == 4 and method == "GET" else "users"
    if parts[2:3] == ["groups"]:
        return "group" if len(parts) == 4 else "groups"
    return "other"


def _http_attributes(method: str, url: str, path: str, bucket: str) -> dict[str, Any]:
    """A client span's attributes on the stable HTTP conventions. ``url.full`` is the URL without its query: the
    query carries cursors, user ids in filters and group names, none of which a trace needs."""
    parsed = httpx.URL(url)
    return {ATTR.HTTP_METHOD: method, ATTR.URL_FULL: f"{parsed.scheme}://{parsed.netloc.decode()}{path}",
            ATTR.URL_TEMPLATE: _template(path), ATTR.SERVER_ADDRESS: parsed.host,
            ATTR.SERVER_PORT: parsed.port or (443 if parsed.scheme == "https" else 80), ATTR.BUCKET: bucket}


def _template(path: str) -> str:
    """`/api/v1/apps/0oa1/users/00u2` -> `/api/v1/apps/{id}/users/{id}`: no ids or names in span names."""
    segments = path.split("?")[0].split("/")
    return "/".join(s if s in {"", "api", "v1", "apps", "users", "groups", "logs"} else "{id}" for s in segments)


@dataclass
class _Bucket:
    name: str = ""  # the rate-limit group (bucket_for): the metrics' label
    limit: int | None = None
    remaining: int | None = None
    reset_at: float = 0.0  # local monotonic-free epoch estimate, corrected by the Date header's offset
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class OktaPage:
    body: Any
    links: dict[str, str]
    status: int


MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # OKTA_MAX_RESPONSE_MB's default


class OktaClient:
    def __init__(self, org_url: str, api_token: str = "", *, auth: "OktaAuth | None" = None,
                 http: httpx.AsyncClient | None = None,
                 timeout_s: float = 35.0, reserve: int = 2, filter_ids: int = 100, max_connections: int = 20,
                 gate: Callable[[], AbstractAsyncContextManager[object]] | None = None,
                 tls: TlsSettings | None = None, max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        """``gate``: entered around every request (the org-wide concurrency budget, :mod:`okta_bridge.permits`);
        ``tls``: the trust store and client certificate (``OKTA_TLS_*``); ``max_response_bytes``: the largest answer
        body read (``OKTA_MAX_RESPONSE_MB``): a larger one is never read past the limit, nor parsed."""
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        self._max_response_bytes = max_response_bytes
        self.org_url = org_url.rstrip("/")
        self.auth: OktaAuth = auth or SswsAuth(api_token)  # SSWS, or an OAuth 2.0 service app (okta_bridge.okta_auth)
        self._headers = {"Accept": "application/json"}
        self._http = http or httpx.AsyncClient(timeout=timeout_s, transport=pooled_transport(max_connections, tls))
        self._buckets: dict[str, _Bucket] = {}
        self._clock_offset = 0.0  # Okta's Date minus the local clock, from the last answer
        self._reserve = reserve
        self.calls: dict[str, int] = {}
        self.filter_ids = filter_ids  # ids per filtered listing: its URL stays well below 8 KB
        self._gate = gate or nullcontext

    def server_now(self) -> datetime:
        """Okta's time, as its last answer's Date header told it (the local clock until the first answer)."""
        return datetime.fromtimestamp(time.time() + self._clock_offset, UTC)

    def budget(self) -> dict[str, dict[str, Any]]:
        """Per rate-limit bucket, the last headers seen: limit, remaining, and when the window resets (epoch s)."""
        return {name: {"limit": b.limit, "remaining": b.remaining, "reset_at": round(b.reset_at, 1)}
                for name, b in sorted(self._buckets.items()) if b.limit is not None}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, path_or_url: str, params: dict[str, Any] | None = None) -> OktaPage:
        return await self._request("GET", path_or_url, params=params)

    async def post(self, path: str, body: Any) -> OktaPage:
        return await self._request("POST", path, json=body)

    async def get_user(self, user_id: str) -> dict[str, Any]:
        return (await self.get(f"/api/v1/users/{user_id}")).body

    async def get_users(self, user_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """Each user by id (the ``user`` bucket), concurrently; None only for one Okta answers 404 for (deleted). A
        bad answer for one raises ``OktaBadAnswerError``: no answer but a 404 reads as "gone"."""
        async def one(user_id: str) -> dict[str, Any] | None:
            try:
                page = await self.get(f"/api/v1/users/{user_id}")
            except OktaNotFoundError:
                return None
            if problem := user_problem(page.body, user_id):  # an empty 200, no status, an unknown one: not "gone"
                raise OktaBadAnswerError(f"okta GET /api/v1/users/{{id}} -> {page.status}: {problem}", page.status)
            return page.body
        found = await asyncio.gather(*(one(u) for u in user_ids))
        return dict(zip(user_ids, found))

    async def list_users_by_ids(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Many users in few calls of the ``users`` bucket: ``GET /api/v1/users?filter=id eq "…" or id eq "…"``
        (``filter`` returns DEPROVISIONED users too), ``limit`` 200, following ``next``. Okta documents no limit on
        the URL or the number of clauses: a request answered 400 or 414 is split in halves until it passes.

        The answer is taken as Okta gives it and promises nothing about freshness: ids it leaves out are absent
        from the result (the caller reads those by id), ids not asked for are dropped, and an id listed twice
        keeps its newest ``lastUpdated``."""
        wanted, found = set(user_ids), {}
        chunks = [user_ids[i:i + self.filter_ids] for i in range(0, len(user_ids), self.filter_ids)]
        while chunks:
            chunk = chunks.pop()
            try:
                async for page in self._pages("/api/v1/users", {"filter": _id_filter(chunk), "limit": 200}):
                    for user in page or ():
                        if isinstance(user, dict) and user.get("id") in wanted:
                            current = found.get(user["id"])
                            if current is None or _updated(user) >= _updated(current):
                                found[user["id"]] = user
            except OktaRequestError as exc:
                if exc.status not in (400, 414) or len(chunk) == 1:
                    raise
                half = len(chunk) // 2
                chunks += [chunk[:half], chunk[half:]]
        return found

    async def get_app_user(self, app_id: str, user_id: str) -> dict[str, Any]:
        """``GET /api/v1/apps/{appId}/users/{userId}`` (the apps bucket, paced by its rate-limit headers like every
        call): read only for app-user profile events the bridge did not cause."""
        return (await self.get(f"/api/v1/apps/{app_id}/users/{user_id}")).body

    async def update_app_user_profile(self, app_id: str, user_id: str, profile: dict[str, Any]) -> None:
        """``POST /api/v1/apps/{appId}/users/{userId}`` with only the changed profile attributes."""
        await self.post(f"/api/v1/apps/{app_id}/users/{user_id}", {"profile": profile})

    async def get_group(self, group_id: str) -> dict[str, Any]:
        """The group by id; ``OktaNotFoundError`` on a 404 only, ``OktaBadAnswerError`` for an answer that is not
        that group with a profile (an empty 200 among them)."""
        page = await self.get(f"/api/v1/groups/{group_id}")
        body = page.body
        if not isinstance(body, dict) or body.get("id") != group_id or not isinstance(body.get("profile"), dict):
            what = f"{describe(body)}, not a group" if not isinstance(body, dict) else "not that group with a profile"
            raise OktaBadAnswerError(f"okta GET /api/v1/groups/{{id}} -> {page.status}: the answer for group "
                                     f"{group_id} is {what}", page.status)
        return body

    async def find_groups_named(self, name: str) -> list[dict[str, Any]]:
        """Okta groups whose name is exactly ``name`` (Okta's ``eq`` search ignores case; the bridge does not)."""
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        found: list[dict[str, Any]] = []
        async for page in self._pages("/api/v1/groups", {"search": f'profile.name eq "{escaped}"', "limit": 200}):
            found.extend(g for g in page if (g.get("profile") or {}).get("name") == name)
        return found

    def list_group_members(self, group_id: str, limit: int = 200):
        """Pages of a group's members from the groups bucket, ``limit=200`` as Okta recommends."""
        return self._pages(f"/api/v1/groups/{group_id}/users", {"limit": limit})

    def list_app_users(self, app_id: str, limit: int = 500):
        """Pages of an app's assignments, each user embedded (`expand=user`): ceil(n/500) calls."""
        return self._pages(f"/api/v1/apps/{app_id}/users", {"limit": limit, "expand": "user"})

    async def _pages(self, path: str, params: dict[str, Any]):
        """Follows ``rel="next"`` until an empty page or no link. A page that is not a JSON list (an object, an empty
        body) raises ``OktaBadAnswerError``: read as "no one listed", it would unassign everyone."""
        page = await self.get(path, params)
        while True:
            if not isinstance(page.body, list):
                raise OktaBadAnswerError(f"okta GET {_template(httpx.URL(path).path)} -> {page.status}: the page is "
                                         f"{describe(page.body)}, not a list", page.status)
            yield page.body
            nxt = page.links.get("next")
            if not nxt or not page.body:
                return
            page = await self.get(nxt)

    async def _request(self, method: str, path_or_url: str, **kwargs: Any) -> OktaPage:
        url = path_or_url if path_or_url.startswith("http") else self.org_url + path_or_url
        if not (url == self.org_url or url.startswith(self.org_url + "/")):  # never send the token elsewhere
            raise OktaRequestError(f"refusing a link outside the org {self.org_url}: {httpx.URL(url).host}")
        path = httpx.URL(url).path
        name = bucket_for(method, path)
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(name=name)
            OKTA_RATE_LIMIT_WAITS.labels(name)  # exported at 0 from the bucket's first call
        with tracer.start_as_current_span(f"okta {method} {_template(path)}", kind=trace.SpanKind.CLIENT,
                                          attributes=_http_attributes(method, url, path, name)) as span:
            await self._wait_for_budget(bucket)
            try:
                async with self._gate():
                    resp = await self._send(method, url, **kwargs)
            except httpx.HTTPError as exc:
                why = describe_transport_error(exc)
                span.set_attribute(ATTR.ERROR_TYPE, type(exc).__name__)
                span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
                raise OktaTransientError(f"okta {method} {_template(path)}: {why}") from None
            self.calls[name] = self.calls.get(name, 0) + 1
            self._observe(bucket, resp)
            span.set_attribute(ATTR.HTTP_STATUS, resp.status_code)
            if resp.status_code >= 400:  # the stable conventions: a client span's 4xx and 5xx are errors
                span.set_attribute(ATTR.ERROR_TYPE, str(resp.status_code))
                span.set_status(trace.StatusCode.ERROR, str(resp.status_code))
            self._raise_for(resp, method, path, bucket, self.auth.secrets())
            try:
                body = resp.json() if resp.content else None
            except ValueError:
                raise OktaTransientError(f"okta {method} {_template(path)}: answer is not JSON", resp.status_code) from None
            return OktaPage(body=body, links=_links(resp), status=resp.status_code)

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with the auth's headers; sent once more when the auth says a 401 is worth it (a DPoP nonce
        asked for, a token revoked before its time)."""
        for attempt in (1, 2):
            headers = {**self._headers, **await self.auth.headers(method, url, self._http)}
            request = self._http.build_request(method, url, headers=headers, **kwargs)
            resp = await self._bounded(await self._http.send(request, stream=True), method, url)
            if resp.status_code != 401 or attempt == 2 or not self.auth.retry(resp):
                return resp
        return resp

    async def _bounded(self, streamed: httpx.Response, method: str, url: str) -> httpx.Response:
        """The answer with its body read, never past ``max_response_bytes``: a larger one (a proxy's error page
        gone wrong, a hostile middlebox) is a transient error and nothing of it is parsed."""
        limit = self._max_response_bytes
        try:
            declared = streamed.headers.get("Content-Length", "")
            body = bytearray()
            too_large = declared.isdigit() and int(declared) > limit
            if not too_large:
                async for chunk in streamed.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        too_large = True
                        break
        finally:
            await streamed.aclose()
        if too_large:
            raise OktaTransientError(f"okta {method} {_template(httpx.URL(url).path)}: the answer's body is over "
                                     f"{limit} bytes; not read (OKTA_MAX_RESPONSE_MB)", streamed.status_code)
        drop = {b"content-encoding", b"content-length", b"transfer-encoding"}  # the body is decoded and whole
        return httpx.Response(streamed.status_code, content=bytes(body), request=streamed.request,
                              headers=[(k, v) for k, v in streamed.headers.raw if k.lower() not in drop])

    async def _wait_for_budget(self, bucket: _Bucket) -> None:
        async with bucket.lock:
            if bucket.remaining is not None and bucket.remaining <= self._reserve:
                delay = bucket.reset_at - time.time()
                if delay > 0:
                    log.info("rate-limit budget low (remaining=%s); waiting %.1fs for the window", bucket.remaining, delay)
                    trace.get_current_span().add_event("okta.rate_limit.wait", {"seconds": delay})
                    OKTA_RATE_LIMIT_WAITS.labels(bucket.name).inc()
                    await asyncio.sleep(min(delay + 0.05, 65))
                bucket.remaining = None
            elif bucket.remaining is not None:
                bucket.remaining -= 1

    def _observe(self, bucket: _Bucket, resp: httpx.Response) -> None:
        h = resp.headers
        if date := _http_date(h.get("date")):
            self._clock_offset = date - time.time()
        if "x-rate-limit-remaining" not in h:
            return
        try:
            bucket.limit = int(h["x-rate-limit-limit"])
            bucket.remaining = int(h["x-rate-limit-remaining"])
            reset = float(h["x-rate-limit-reset"])
        except (KeyError, ValueError):
            return
        OKTA_RATE_LIMIT_REMAINING.labels(bucket.name).set(bucket.remaining)
        server_now = _http_date(h.get("date")) or time.time()
        bucket.reset_at = time.time() + max(0.0, reset - server_now)

    @staticmethod
    def _raise_for(resp: httpx.Response, method: str, path: str, bucket: _Bucket, tokens: list[str]) -> None:
        status = resp.status_code
        if status < 400:
            return
        summary = _summary(resp)
        for token in tokens:
            summary = summary.replace(token, "***")
        summary = re.sub(r"(SSWS|Bearer|DPoP)\s+\S+", r"\1 ***", summary)
        if status == 403 and (scope := _missing_scope(resp)):
            summary = f"{summary} (the access token lacks the scope {scope}: grant it to the service app)"
        where = f"okta {method} {_template(path)} -> {status}: {summary}"
        if status == 429 or status >= 500:
            retry = max(0.0, bucket.reset_at - time.time()) if status == 429 else None
            raise OktaTransientError(where, status, retry)
        if status in (401, 403):
            raise OktaAuthError(where, status)
        if status == 404:
            raise OktaNotFoundError(where, status)
        if path.endswith("/logs") and status == 400:
            raise OktaCursorRejectedError(where, status)
        raise OktaRequestError(where, status)


def _missing_scope(resp: httpx.Response) -> str | None:
    """The scope Okta names in a 403's ``WWW-Authenticate: Bearer … error="insufficient_scope", scope="…"``."""
    challenge = resp.headers.get("www-authenticate", "")
    if "insufficient_scope" not in challenge:
        return None
    found = re.search(r'scope="([a-z.\s]{1,200})"', challenge)
    return found.group(1) if found else "?"


def describe(body: Any) -> str:
    """What kind of JSON an answer was, for an error message (never its values)."""
    if body is None:
        return "empty"
    if isinstance(body, dict):
        return "a JSON object"
    if isinstance(body, list):
        return "a JSON list"
    return f"a JSON {type(body).__name__}"


def user_problem(user: Any, user_id: str) -> str | None:
    """None when ``user`` is an Okta user the bridge can act on: the one asked for, with a status Okta documents.
    Else what is wrong with it, in words safe for the audit trail (no values but a status-like word)."""
    if not isinstance(user, dict):
        return f"the answer for user {user_id} is {describe(user)}, not a user"
    if user.get("id") != user_id:
        return f"the answer for user {user_id} is a user without that id"
    status = user.get("status")
    if status is None:
        return f"user {user_id} has no status"
    if not isinstance(status, str) or status not in USER_STATUSES:
        shown = status if isinstance(status, str) and _WORD.fullmatch(status) else "unreadable"
        return f"user {user_id} has status {shown}, not one Okta documents"
    return None


def _id_filter(user_ids: list[str]) -> str:
    return " or ".join(f'id eq "{u}"' for u in user_ids)


def _updated(user: dict[str, Any]) -> str:
    """``lastUpdated`` as Okta writes it (ISO 8601, UTC, fixed width): comparable as text."""
    value = user.get("lastUpdated")
    return value if isinstance(value, str) else ""


def _links(resp: httpx.Response) -> dict[str, str]:
    links: dict[str, str] = {}
    for value in resp.headers.get_list("link"):
        for url, rel in _LINK.findall(value):
            links[rel] = url
    return links


def _summary(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:120]
    if not isinstance(body, dict):
        return str(body)[:120]
    return f"{body.get('errorCode', '?')} {body.get('errorSummary', '')}".strip()


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
