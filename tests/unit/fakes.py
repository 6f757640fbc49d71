"""In-memory fakes of the services' ports, and a small SCIM 2.0 target for ``httpx.MockTransport``.

Fakes over mocks (docs/style.md): each keeps what it was asked so tests assert on outcomes, not on calls.
"""

from __future__ import annotations

import copy
from contextlib import asynccontextmanager
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import AuditRecorded, AuditStep, OktaEventReceived, ScimOperationPlanned, SyncReason
from okta_bridge.okta_client import OktaNotFoundError
from queue_poller.ports import CursorState
from okta_bridge.stores.links import Link, LinkWrite
from okta_bridge.stores.assignments import Landing, Row, fold
from translator.ports import Assignment

ORG = "https://acme.okta.com"


def app_connector(app_id: str = "0oa1jiraxxxxxxxxxxxx", name: str = "jira", **overrides: Any) -> AppConnector:
    data: dict[str, Any] = {"okta_app_id": app_id, "name": name, "base_url": "https://jira.lan/scim/v2/",
                            "auth": {"type": "none"}}
    data.update(overrides)
    return AppConnector.model_validate(data)


# ---------------------------------------------------------------- System Log events (raw, as Okta answers them)

def membership_event(uuid: str, kind: str = "add", *, app_id: str = "0oa1jiraxxxxxxxxxxxx", user_id: str = "00u1xxxxxxxxxxxxxxxx",
                     username: str | None = "ann@acme.com", token_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "uuid": uuid, "published": "2026-01-02T03:04:05.000Z",
        "eventType": f"application.user_membership.{kind}",
        "target": [
            {"id": "0ua9appuserxxxxxxxxx", "type": "AppUser", "alternateId": username, "displayName": "Ann Example"},
            {"id": app_id, "type": "AppInstance", "alternateId": "Jira", "displayName": "Jira"},
            {"id": user_id, "type": "User", "alternateId": "ann@acme.com", "displayName": "Ann Example"},
        ],
        "transaction": {"id": "tx-" + uuid, "detail": {}},
    }
    if token_id:
        event["transaction"]["detail"]["requestApiTokenId"] = token_id
    return event


def user_event(uuid: str, kind: str = "account.update_profile", *, user_id: str = "00u1xxxxxxxxxxxxxxxx") -> dict[str, Any]:
    return {
        "uuid": uuid, "published": "2026-01-02T03:04:05.000Z", "eventType": f"user.{kind}",
        "target": [{"id": user_id, "type": "User", "alternateId": "ann@acme.com", "displayName": "Ann"}],
        "transaction": {"id": "tx-" + uuid, "detail": {}},
    }


def okta_user(user_id: str = "00u1xxxxxxxxxxxxxxxx", status: str = "ACTIVE", updated: str = "2026-01-01T00:00:00.000Z",
              **profile: Any) -> dict[str, Any]:
    base = {"login": f"{user_id}@acme.com", "email": f"{user_id}@acme.com", "firstName": "Ann",
            "lastName": "Example", "displayName": "Ann Example", "locale": "en_US"}
    return {"id": user_id, "status": status, "lastUpdated": updated, "profile": {**base, **profile}}


# ---------------------------------------------------------------- queue-poller ports

class FakeLogSource:
    """Pages queued per link; ``fail_with`` raises on the next fetch."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[list[Any], str | None]] = {}
        self.fetched: list[str] = []
        self.fresh_links: list[datetime] = []
        self.fail_with: Exception | None = None

    def server_now(self) -> datetime:
        from datetime import UTC
        return datetime.now(UTC)

    filter: str | None = None  # the event-type filter the bridge asks for (None: none, as the test links)

    def polling_link(self, since: datetime) -> str:
        from urllib.parse import quote
        self.fresh_links.append(since)
        asked = f"&filter={quote(self.filter)}" if self.filter is not None else ""
        return f"{ORG}/api/v1/logs?since={since.isoformat()}&sortOrder=ASCENDING{asked}"

    def asks_as_configured(self, link: str) -> bool:
        from urllib.parse import parse_qs, urlsplit
        return parse_qs(urlsplit(link).query).get("filter", [None])[0] == self.filter

    async def fetch(self, link: str) -> tuple[list[Any], str | None]:
        self.fetched.append(link)
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc
        return self.pages.get(link, ([], link))


class FakePollerState:
    def __init__(self, stored: CursorState | None = None, assignments: set[tuple[str, str]] | None = None) -> None:
        self.stored = stored
        self.saved: list[CursorState] = []
        self.seen: set[str] = set()
        self.assignments = assignments or set()  # (app_id, user_id)
        self.pushed_groups: set[str] = set()
        self.log: list[str] = []  # order of the writes that matter, shared with the outbox

    async def load(self) -> CursorState | None:
        return self.stored

    async def save(self, state: CursorState) -> None:
        copy = CursorState(state.next_link, state.last_success_at, list(state.known_apps), state.resume_from)
        self.saved.append(copy)
        self.stored = copy
        self.log.append(f"save {state.next_link}")

    async def unseen(self, uuids: list[str]) -> set[str]:
        return {u for u in uuids if u not in self.seen}

    async def mark_seen(self, uuids: list[str]) -> None:
        self.seen.update(uuids)

    async def users_with_assignments(self, user_ids: list[str], app_ids: list[str]) -> set[str]:
        return {u for a, u in self.assignments if u in user_ids and a in app_ids}

    async def pushed_group_ids(self) -> set[str]:
        return set(self.pushed_groups)


class FakeOutbox:
    def __init__(self, log: list[str] | None = None) -> None:
        self.events: list[OktaEventReceived] = []
        self.syncs: list[tuple[str, SyncReason]] = []
        self.group_syncs: list[tuple[str, SyncReason]] = []
        self.dead: list[tuple[Any, str]] = []
        self.log = log if log is not None else []

    @asynccontextmanager
    async def batch(self):
        self.batches = getattr(self, "batches", 0) + 1
        yield

    async def publish_event(self, event: OktaEventReceived, poll_span_context: Any) -> None:
        self.events.append(event)
        self.log.append(f"publish {event.event_uuid}")

    async def request_sync(self, app_id: str, reason: SyncReason) -> None:
        self.syncs.append((app_id, reason))

    async def request_group_sync(self, app_id: str, reason: SyncReason) -> None:
        self.group_syncs.append((app_id, reason))

    async def dead_letter(self, raw: Any, reason: str) -> None:
        self.dead.append((raw, reason))


# ---------------------------------------------------------------- translator ports

class FakeAssignments:
    """Same semantics as ``MongoAssignments`` (compare-and-set on ``rev``; ``built_max`` never goes back)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.between_read_and_commit = None  # async callable run once after a batch read its rows (races)
        self.commits = 0
        self.refuse: set[tuple[str, str]] = set()  # keys whose commit the database refuses on its own

    @property
    def versions(self) -> dict[tuple[str, str], int]:
        return {k: r.get("plan_version", 0) for k, r in self.rows.items()}

    async def read_rows(self, keys):
        out = {}
        for k in keys:
            r = self.rows.get(k)
            out[k] = Row(*k) if r is None else Row(
                k[0], k[1], r.get("plan_version", 0), r.get("rev", 0), bool(r.get("assigned")), r.get("as_of", -1),
                r.get("app_username"), r.get("username_as_of", -1), r.get("built_max", -1), True,
                copy.deepcopy(r.get("app_profile")), r.get("app_profile_as_of", -1))
            out[k] = replace(out[k], user_built_max=max(
                [r.get("built_max", -1) for (_, u), r in self.rows.items() if u == k[1]], default=-1))
        if self.between_read_and_commit is not None:
            hook, self.between_read_and_commit = self.between_read_and_commit, None
            await hook()
        return out

    async def commit(self, commits):
        out = []
        for c in commits:
            key, row = (c.row.app_id, c.row.user_id), self.rows.get((c.row.app_id, c.row.user_id), {})
            if key in self.refuse:
                out.append(Landing.REFUSED)
                continue
            if row.get("rev", 0) != c.row.rev or row.get("built_max", -1) > c.updated:
                out.append(Landing.CHANGED)
                continue
            folded, _ = fold(c.row, c.change)
            self.rows[key] = {**row, "assigned": folded.assigned, "as_of": folded.assigned_as_of,
                              "app_username": folded.app_username, "username_as_of": folded.username_as_of,
                              "plan_version": c.version, "rev": c.row.rev + 1, "built_max": c.updated,
                              "app_profile": folded.app_profile, "app_profile_as_of": folded.app_profile_as_of}
            self.commits += 1
            out.append(Landing.LANDED)
        return out

    async def get(self, app_id: str, user_id: str) -> Assignment | None:
        row = self.rows.get((app_id, user_id))
        return _row(app_id, user_id, row) if row is not None else None

    async def for_users(self, user_ids, app_ids) -> dict[str, list[Assignment]]:
        users, apps = set(user_ids), set(app_ids)
        out: dict[str, list[Assignment]] = {u: [] for u in users}
        for (a, u), r in self.rows.items():
            if u in users and a in apps:
                out[u].append(_row(a, u, r))
        return out

    async def record_listing(self, app_id: str, rows: list[tuple[str, str | None]], sync_id: str,
                             as_of: int, profiles: dict[str, dict[str, Any]] | None = None) -> None:
        for user_id, username in rows:
            row = self.rows.setdefault((app_id, user_id), {})
            row["sync_id"], row["rev"] = sync_id, row.get("rev", 0) + 1
            if row.get("as_of", -1) < as_of:  # no membership event since the listing was asked for
                row.update(assigned=True, as_of=as_of)
            if row.get("username_as_of", -1) < as_of:
                row.update(app_username=username, username_as_of=as_of)
            if user_id in (profiles or {}) and row.get("app_profile_as_of", -1) < as_of:
                row.update(app_profile=copy.deepcopy(profiles[user_id]))
            if user_id in (profiles or {}):
                row["app_profile_as_of"] = max(as_of, row.get("app_profile_as_of", -1))

    async def merge_app_profile(self, app_id: str, user_id: str, values: dict[str, Any], as_of: int) -> None:
        row = self.rows.get((app_id, user_id))
        if row is None or not values:
            return
        row["app_profile"] = {**(row.get("app_profile") or {}), **values}
        row["app_profile_as_of"] = max(as_of, row.get("app_profile_as_of", -1))
        row["rev"] = row.get("rev", 0) + 1

    async def unassign_missing(self, app_id: str, sync_id: str, as_of: int) -> list[str]:
        missing = [u for (a, u), r in self.rows.items() if a == app_id and r.get("assigned")
                   and r.get("sync_id") != sync_id and r.get("as_of", -1) < as_of]
        for user_id in missing:
            row = self.rows[(app_id, user_id)]
            row.update(assigned=False, as_of=as_of, rev=row.get("rev", 0) + 1)
        return missing


def _row(app_id: str, user_id: str, row: dict[str, Any]) -> Assignment:
    return Assignment(app_id, user_id, row.get("app_username"), bool(row.get("assigned")))


class FakeOkta:
    """Okta users by id (missing = 404) and app-user listings in pages; counts every call."""

    def __init__(self, users: dict[str, dict[str, Any]] | None = None, page_size: int = 500) -> None:
        self.users = users or {}
        self.app_users: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.page_size = page_size
        self.get_user_calls: list[str] = []
        self.listing_reads: list[list[str]] = []  # the batched reads (GET /api/v1/users?filter=…)
        self.stale: dict[str, dict[str, Any]] = {}  # users the batched read answers with an older copy
        self.left_out: set[str] = set()  # users the batched read leaves out
        self.on_listing = None  # async callable run while a batched read is answered (races)
        self.listing_calls = 0
        self.after_page = None  # async callable run after a page was read, before the sync uses it (races)
        self.on_get_user = None  # async callable run while a user is read (races)
        self.now = datetime(2026, 11, 1, tzinfo=UTC)
        self._clock = 0
        self.app_user_reads: list[tuple[str, str]] = []  # GET /api/v1/apps/{appId}/users/{userId}
        self.app_user_error: Exception | None = None  # raised by the next app-user reads (until cleared)

    def server_now(self) -> datetime:
        return self.now

    def update(self, user_id: str, status: str | None = None, **profile: Any) -> None:
        """A change in Okta: the profile and status as given, and ``lastUpdated`` moves on, as Okta's does."""
        user = self.users[user_id]
        user["profile"].update(profile)
        if status is not None:
            user["status"] = status
        self._clock += 1
        user["lastUpdated"] = f"2026-01-02T00:{self._clock // 60:02d}:{self._clock % 60:02d}.000Z"

    def assign(self, app_id: str, user: dict[str, Any], username: str | None = None,
               app_profile: dict[str, Any] | None = None) -> None:
        self.users[user["id"]] = user
        self.app_users[app_id].append({"id": user["id"], "scope": "USER", "status": "ACTIVE",
                                       "credentials": {"userName": username or user["profile"]["login"]},
                                       "profile": app_profile or {}, "_embedded": {"user": user}})

    async def get_users(self, user_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        out = {}
        for user_id in user_ids:
            try:
                out[user_id] = await self.get_user(user_id)
            except OktaNotFoundError:
                out[user_id] = None
        return out

    async def list_users_by_ids(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The batched read: ``stale`` users (id -> an older copy) answer as a listing that lags behind."""
        self.listing_reads.append(list(user_ids))
        if self.on_listing is not None:
            hook, self.on_listing = self.on_listing, None
            await hook(user_ids)
        return {u: copy.deepcopy(self.stale.get(u, self.users[u])) for u in user_ids
                if u in self.users and u not in self.left_out}

    async def get_user(self, user_id: str) -> dict[str, Any]:
        self.get_user_calls.append(user_id)
        if self.on_get_user is not None:
            hook, self.on_get_user = self.on_get_user, None
            await hook(user_id)
        if user_id not in self.users:
            raise OktaNotFoundError("okta GET /api/v1/users/{id} -> 404: E0000007 Not found", 404)
        return self.users[user_id]

    async def get_app_user(self, app_id: str, user_id: str) -> dict[str, Any]:
        """``GET /api/v1/apps/{appId}/users/{userId}``: counted in ``app_user_reads``; 404 when not assigned."""
        self.app_user_reads.append((app_id, user_id))
        if self.app_user_error is not None:
            raise self.app_user_error
        found = next((au for au in self.app_users.get(app_id, []) if au["id"] == user_id), None)
        if found is None:
            raise OktaNotFoundError("okta GET /api/v1/apps/{id}/users/{id} -> 404: E0000007 Not found", 404)
        return {k: copy.deepcopy(v) for k, v in found.items() if k != "_embedded"}

    async def update_app_user_profile(self, app_id: str, user_id: str, profile: dict[str, Any]) -> None:
        """``POST /api/v1/apps/{appId}/users/{userId}`` (write-back): merged into the app user's profile."""
        self.set_app_profile(app_id, user_id, **profile)

    def set_app_profile(self, app_id: str, user_id: str, **values: Any) -> None:
        """An app-user profile change in Okta (an admin's, or Okta's profile mapping)."""
        found = next(au for au in self.app_users[app_id] if au["id"] == user_id)
        found["profile"].update(values)

    async def list_app_users(self, app_id: str):
        rows = self.app_users.get(app_id, [])
        for start in range(0, max(len(rows), 1), self.page_size):
            self.listing_calls += 1
            page = copy.deepcopy(rows[start:start + self.page_size])  # as read now: later changes are not in it
            if self.after_page is not None:
                hook, self.after_page = self.after_page, None
                await hook()
            yield page


class FakePlanOutbox:
    def __init__(self) -> None:
        self.plans: list[tuple[ScimOperationPlanned, str]] = []

    async def publish(self, plan: ScimOperationPlanned, pool: str, context=None) -> None:
        self.plans.append((plan, pool))


def audit_record(step: AuditStep, fields: dict[str, Any]) -> AuditRecorded:
    """The record ``AuditPublisher.record`` would build of these fields: refused without a reason code."""
    return AuditRecorded(at=datetime.now(UTC), service="test", step=step, org=ORG,
                         **{k: v for k, v in fields.items() if k != "span"})


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[tuple[AuditStep, dict[str, Any]]] = []

    async def record(self, step: AuditStep, **fields: Any) -> None:
        audit_record(step, fields)  # as the real one: every record has a reason code
        self.records.append((step, fields))

    def steps(self) -> list[AuditStep]:
        return [s for s, _ in self.records]


# ---------------------------------------------------------------- scim-dispatcher ports

class FakeLinks:
    """Same contract as the MongoDB link store: a save with a version not newer than the stored one is refused."""

    def __init__(self) -> None:
        self.links: dict[tuple[str, str], Link] = {}
        self.fences: dict[tuple[str, str], int] = {}

    async def get(self, app_id: str, user_id: str) -> Link | None:
        return self.links.get((app_id, user_id))

    async def get_keys(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Link]:
        return {k: self.links[k] for k in keys if k in self.links}

    async def save_many(self, writes: list[LinkWrite]) -> list[bool]:
        """Version-checked and fenced, each write on its own."""
        out = []
        for w in writes:
            key, old = (w.app_id, w.user_id), self.links.get((w.app_id, w.user_id))
            if old is not None and (old.applied_version >= w.version or self.fences.get(key, 0) > w.fence):
                out.append(False)
                continue
            self.fences[key] = w.fence
            self.links[key] = Link(w.target_id if w.target_id is not None else (old.target_id if old else None),
                                   w.version, w.active if w.active is not None else (old.active if old else None),
                                   w.user_name if w.user_name is not None else (old.user_name if old else None))
            out.append(True)
        return out

    async def save(self, plan: ScimOperationPlanned, target_id: str | None, active: bool | None) -> bool:
        return (await self.save_many([LinkWrite(plan.app_id, plan.okta_user_id, plan.version, target_id, active)]))[0]

    async def holder_of(self, app_id: str, target_id: str, other_than: str) -> str | None:
        return next((u for (a, u), link in self.links.items()
                     if a == app_id and u != other_than and link.target_id == target_id), None)


@dataclass
class FakeScimTarget:
    """A SCIM 2.0 user store behind ``httpx.MockTransport``; records each request as (method, path)."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    conflict_on_post: bool = False  # answer 409 although the lookup found nothing (a race with another writer)
    _ids: Any = field(default_factory=lambda: (f"t-{n}" for n in itertools.count(1)))

    def add(self, user_name: str, active: bool = True, **extra: Any) -> str:
        uid = next(self._ids)
        self.users[uid] = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": uid,
                           "userName": user_name, "active": active, **extra}
        return uid

    def calls(self) -> list[str]:
        return [m for m, _ in self.requests]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = urlsplit(str(request.url))
        path = unquote(url.path.split("/scim/v2", 1)[1])
        self.requests.append((request.method, path))
        body = json.loads(request.content) if request.content else None
        self.bodies.append(body)
        if path == "/Users" and request.method == "GET":
            expr = parse_qs(url.query)["filter"][0]
            wanted = expr.split(" eq ", 1)[1].strip('"')
            found = [u for u in self.users.values() if u["userName"].lower() == wanted.lower()]
            return _scim(200, {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                               "totalResults": len(found), "startIndex": 1, "itemsPerPage": len(found),
                               "Resources": found})
        if path == "/Users" and request.method == "POST":
            taken = any(u["userName"].lower() == body["userName"].lower() for u in self.users.values())
            if taken or self.conflict_on_post:
                return _scim(409, {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                                   "detail": "userName taken", "status": "409"})
            uid = self.add(body["userName"])
            self.users[uid] = {**body, "id": uid}
            return _scim(201, self.users[uid])
        uid = path.removeprefix("/Users/")
        if uid not in self.users:
            return _scim(404, {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "detail": "no such user",
                               "status": "404"})
        if request.method == "GET":
            return _scim(200, self.users[uid])
        if request.method == "PUT":
            self.users[uid] = {**body, "id": uid}
            return _scim(200, self.users[uid])
        if request.method == "PATCH":
            for op in body.get("Operations", []):
                self.users[uid].update(op.get("value") or {})
            return _scim(200, self.users[uid])
        return _scim(405, {"detail": f"{request.method} not supported", "status": "405"})


def _scim(status: int, data: Any) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(data).encode(),
                          headers={"Content-Type": "application/scim+json"})


class FakeGuards:
    """The guard's store in memory, with the real threshold decision (``okta_bridge.stores.guards.decide``)."""

    def __init__(self, count_assigned=None) -> None:
        self.windows: dict[str, dict[str, Any]] = {}
        self.held_keys: dict[tuple[str, str], dict[str, Any]] = {}
        self.count_assigned = count_assigned

    async def take(self, app_id, n, max_deactivations, window_s):
        from okta_bridge.stores.guards import decide, limit_of
        w = self.windows.setdefault(app_id, {"count": 0, "paused": False})
        before = w["count"]
        w["count"] += n
        assigned = self.count_assigned(app_id) if self.count_assigned and isinstance(max_deactivations, str) else 0
        take = decide(before, n, limit_of(max_deactivations, assigned + before + n), w["paused"])
        w["paused"] = take.paused
        return take

    async def hold(self, held) -> None:
        for h in held:
            self.held_keys[(h.app_id, h.user_id)] = {"version": h.version, "released": False}

    async def released(self, keys):
        return {k for k in keys if self.held_keys.get(k, {}).get("released")}

    async def forget(self, keys) -> None:
        for k in keys:
            if self.held_keys.get(k, {}).get("released"):
                del self.held_keys[k]

    def release_all(self, app_id: str) -> None:
        for k, v in self.held_keys.items():
            if k[0] == app_id:
                v["released"] = True
        self.windows[app_id] = {"count": 0, "paused": False}

    def held(self, app_id: str) -> list[str]:
        return sorted(u for (a, u), v in self.held_keys.items() if a == app_id and not v["released"])


class FakeRaw:
    """The broker's message under a real ``Delivery``: records whether it was acked or returned."""

    def __init__(self, body: bytes, routing_key: str = "translator.work") -> None:
        self.body, self.headers, self.routing_key = body, {}, routing_key
        self.acked = self.nacked = False

    async def ack(self) -> None:
        self.acked = True

    async def nack(self, requeue: bool = True) -> None:
        self.nacked = True
