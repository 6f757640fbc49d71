"""In-memory fakes of the services' ports, and a small SCIM 2.0 target for ``httpx.MockTransport``.

Fakes over mocks (docs/style.md): each keeps what it was asked so tests assert on outcomes, not on calls.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import AuditStep, OktaEventReceived, ScimOperationPlanned, SyncReason
from okta_bridge.okta_client import OktaNotFoundError
from queue_poller.ports import CursorState
from scim_dispatcher.ports import Link
from translator.ports import Assignment, ListingFence, Take

ORG = "https://acme.okta.com"


def app_connector(app_id: str = "0oa1jira", name: str = "jira", **overrides: Any) -> AppConnector:
    data: dict[str, Any] = {"okta_app_id": app_id, "name": name, "base_url": "https://jira.lan/scim/v2/",
                            "auth": {"type": "none"}}
    data.update(overrides)
    return AppConnector.model_validate(data)


# ---------------------------------------------------------------- System Log events (raw, as Okta answers them)

def membership_event(uuid: str, kind: str = "add", *, app_id: str = "0oa1jira", user_id: str = "00u1",
                     username: str | None = "ann@acme.com", token_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "uuid": uuid, "published": "2026-01-02T03:04:05.000Z",
        "eventType": f"application.user_membership.{kind}",
        "target": [
            {"id": "0ua9appuser", "type": "AppUser", "alternateId": username, "displayName": "Ann Example"},
            {"id": app_id, "type": "AppInstance", "alternateId": "Jira", "displayName": "Jira"},
            {"id": user_id, "type": "User", "alternateId": "ann@acme.com", "displayName": "Ann Example"},
        ],
        "transaction": {"id": "tx-" + uuid, "detail": {}},
    }
    if token_id:
        event["transaction"]["detail"]["requestApiTokenId"] = token_id
    return event


def user_event(uuid: str, kind: str = "account.update_profile", *, user_id: str = "00u1") -> dict[str, Any]:
    return {
        "uuid": uuid, "published": "2026-01-02T03:04:05.000Z", "eventType": f"user.{kind}",
        "target": [{"id": user_id, "type": "User", "alternateId": "ann@acme.com", "displayName": "Ann"}],
        "transaction": {"id": "tx-" + uuid, "detail": {}},
    }


def okta_user(user_id: str = "00u1", status: str = "ACTIVE", **profile: Any) -> dict[str, Any]:
    base = {"login": f"{user_id}@acme.com", "email": f"{user_id}@acme.com", "firstName": "Ann",
            "lastName": "Example", "displayName": "Ann Example", "locale": "en_US"}
    return {"id": user_id, "status": status, "profile": {**base, **profile}}


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

    def polling_link(self, since: datetime) -> str:
        self.fresh_links.append(since)
        return f"{ORG}/api/v1/logs?since={since.isoformat()}&sortOrder=ASCENDING"

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
        copy = CursorState(state.next_link, state.last_success_at, list(state.known_apps))
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
    """Same semantics as ``MongoAssignments``; ``clock`` stands for the database's clock (tests move it)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.versions: dict[tuple[str, str], int] = defaultdict(int)
        self.stamps: dict[tuple[str, str], dict[str, datetime]] = defaultdict(dict)
        self.clock = datetime(2026, 11, 1, tzinfo=UTC)

    async def take_version(self, app_id, user_id, *, assigned=None, app_username=None, as_of=None,
                           listing: ListingFence | None = None) -> Take:
        row = self.rows.setdefault((app_id, user_id), {})
        if assigned is not None and (as_of is None or as_of >= row.get("as_of", -1)):
            row["assigned"] = assigned
            if as_of is not None:
                row["as_of"] = max(as_of, row.get("as_of", -1))
        row.setdefault("assigned", False)
        if app_username is not None and (as_of is None or as_of >= row.get("username_as_of", -1)):
            row["app_username"] = app_username
            if as_of is not None:
                row["username_as_of"] = max(as_of, row.get("username_as_of", -1))
        stamps = self.stamps[(app_id, user_id)]
        past, future = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
        missing = future if self.versions[(app_id, user_id)] > 0 else past  # versions from before the stamps
        trusted = listing is not None and stamps.get("take", missing) < listing.asked_at \
            and stamps.get("read", missing) < listing.asked_at - listing.window
        stamps["take"] = self.clock
        if trusted:
            stamps.setdefault("read", past)
        else:
            stamps["read"] = self.clock
        return Take(await self.next_version(app_id, user_id), await self.get(app_id, user_id), self.clock, trusted)

    async def check(self, app_id: str, user_id: str) -> tuple[int, datetime]:
        return self.versions[(app_id, user_id)], self.clock

    async def next_version(self, app_id: str, user_id: str) -> int:
        self.versions[(app_id, user_id)] += 1
        return self.versions[(app_id, user_id)]

    async def now(self) -> datetime:
        return self.clock

    async def get(self, app_id: str, user_id: str) -> Assignment | None:
        row = self.rows.get((app_id, user_id))
        return _row(app_id, user_id, row) if row is not None else None

    async def for_user(self, user_id: str, app_ids: list[str]) -> list[Assignment]:
        return [_row(a, u, r) for (a, u), r in self.rows.items() if u == user_id and a in app_ids]

    async def set(self, app_id: str, user_id: str, *, assigned: bool | None = None,
                  app_username: str | None = None, sync_id: str | None = None) -> None:
        row = self.rows.setdefault((app_id, user_id), {})
        if assigned is not None:
            row["assigned"] = assigned
        if app_username is not None:
            row["app_username"] = app_username
        if sync_id is not None:
            row["sync_id"] = sync_id

    async def record_listing(self, app_id: str, rows: list[tuple[str, str | None]], sync_id: str,
                             as_of: int) -> None:
        for user_id, username in rows:
            row = self.rows.setdefault((app_id, user_id), {})
            row["sync_id"] = sync_id
            if row.get("as_of", -1) < as_of:  # no membership event since the listing was asked for
                row.update(assigned=True, as_of=as_of)
            if row.get("username_as_of", -1) < as_of:
                row.update(app_username=username, username_as_of=as_of)

    async def unassign_missing(self, app_id: str, sync_id: str, as_of: int) -> list[str]:
        missing = [u for (a, u), r in self.rows.items() if a == app_id and r.get("assigned")
                   and r.get("sync_id") != sync_id and r.get("as_of", -1) < as_of]
        for user_id in missing:
            self.rows[(app_id, user_id)].update(assigned=False, as_of=as_of)
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
        self.listing_calls = 0
        self.after_page = None  # async callable run after a page was read, before the sync uses it (races)
        self.on_get_user = None  # async callable run while a user is read (races)
        self.now = datetime(2026, 11, 1, tzinfo=UTC)

    def server_now(self) -> datetime:
        return self.now

    def assign(self, app_id: str, user: dict[str, Any], username: str | None = None,
               app_profile: dict[str, Any] | None = None) -> None:
        self.users[user["id"]] = user
        self.app_users[app_id].append({"id": user["id"], "scope": "USER", "status": "ACTIVE",
                                       "credentials": {"userName": username or user["profile"]["login"]},
                                       "profile": app_profile or {}, "_embedded": {"user": user}})

    async def get_user(self, user_id: str) -> dict[str, Any]:
        self.get_user_calls.append(user_id)
        if self.on_get_user is not None:
            hook, self.on_get_user = self.on_get_user, None
            await hook(user_id)
        if user_id not in self.users:
            raise OktaNotFoundError("okta GET /api/v1/users/{id} -> 404: E0000007 Not found", 404)
        return self.users[user_id]

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

    async def publish(self, plan: ScimOperationPlanned, pool: str) -> None:
        self.plans.append((plan, pool))


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[tuple[AuditStep, dict[str, Any]]] = []

    async def record(self, step: AuditStep, **fields: Any) -> None:
        self.records.append((step, fields))

    def steps(self) -> list[AuditStep]:
        return [s for s, _ in self.records]


# ---------------------------------------------------------------- scim-dispatcher ports

class FakeLinks:
    """Same contract as the MongoDB link store: a save with a version not newer than the stored one is refused."""

    def __init__(self) -> None:
        self.links: dict[tuple[str, str], Link] = {}

    async def get(self, app_id: str, user_id: str) -> Link | None:
        return self.links.get((app_id, user_id))

    async def save(self, plan: ScimOperationPlanned, target_id: str | None, active: bool | None) -> bool:
        key = (plan.app_id, plan.okta_user_id)
        old = self.links.get(key)
        if old is not None and old.applied_version >= plan.version:
            return False
        self.links[key] = Link(target_id if target_id is not None else (old.target_id if old else None),
                               plan.version, active if active is not None else (old.active if old else None))
        return True


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
