"""Shared plumbing: configuration, dialects, errors, auth, rendering."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .store import GROUP, USER, Record, Store

V1, V2 = "v1", "v2"
CONTENT_TYPE = {V1: "application/json", V2: "application/scim+json"}
CORE11 = "urn:scim:schemas:core:1.0"
CORE20 = {USER: "urn:ietf:params:scim:schemas:core:2.0:User",
          GROUP: "urn:ietf:params:scim:schemas:core:2.0:Group"}
LIST20 = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR20 = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCHOP20 = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENDPOINT = {USER: "Users", GROUP: "Groups"}
QUIRKS = {
    "id-equals-username": "user ids equal the userName, group ids the displayName",
    "patch-204": "PATCH answers 204 with no body",
    "500-instead-of-404": "a missing resource gives 500 on PUT/PATCH/DELETE (GET still 404)",
    "plain-text-401": "401 answers carry a text/plain body",
    "v2-application-json": "SCIM 2.0 answers use Content-Type application/json",
    "no-unique-username": "userName is not enforced unique: a second POST creates a second account",
}


@dataclass
class TargetConfig:
    token: str = "demo-token"
    name: str = "jira"
    quirks: frozenset[str] = frozenset()
    latency_ms: int = 0  # added to every SCIM answer (the starting value; POST /_admin/config changes it)
    log_entries: int = 10_000  # capacity of the request log

    def __post_init__(self) -> None:
        unknown = set(self.quirks) - set(QUIRKS)
        if unknown:
            raise ValueError(f"unknown quirks {sorted(unknown)}; known: {sorted(QUIRKS)}")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if self.log_entries < 1:
            raise ValueError("log_entries must be >= 1")


@dataclass
class TargetState:
    """What the target holds: the default tenant's `store`, the other tenants, the request log, the fault
    rules, the in-flight gauges and the latency now in force."""

    config: TargetConfig
    store: Store = field(default_factory=Store)

    def __post_init__(self) -> None:
        from .faults import FaultSet
        from .inflight import Inflight
        from .requestlog import RequestLog
        from .tenants import Tenants
        self._configure(self.store)
        self.tenants = Tenants(self.store, lambda: self._configure(Store()))
        self.faults = FaultSet()
        self.log = RequestLog(self.config.log_entries)
        self.inflight = Inflight()
        self.latency_ms = self.config.latency_ms

    def _configure(self, store: Store) -> Store:
        store.id_equals_name = "id-equals-username" in self.config.quirks
        store.unique_user_names = "no-unique-username" not in self.config.quirks
        return store


class ScimError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str | None = None, headers=None):
        super().__init__(detail)
        self.status, self.detail, self.scim_type, self.headers = status, detail, scim_type, headers


def state_of(request: Request) -> TargetState:
    return request.app.state.target


def tenant_of(request: Request) -> str:
    from .tenants import DEFAULT, SCOPE_KEY
    return request.scope.get(SCOPE_KEY, DEFAULT)


def store_of(request: Request) -> Store:
    """The store of the request's tenant (`/t/{tenant}/scim/…`; the default tenant's otherwise)."""
    return state_of(request).tenants.store(tenant_of(request))


def dialect_of(path: str) -> str:
    from .tenants import split_tenant
    return V1 if path[len(split_tenant(path)[1]):].startswith("/scim/v1") else V2


def content_type(state: TargetState, dialect: str) -> str:
    if dialect == V2 and "v2-application-json" in state.config.quirks:
        return "application/json"
    return CONTENT_TYPE[dialect]


def error_body(dialect: str, status: int, detail: str, scim_type: str | None = None) -> dict:
    if dialect == V1:
        return {"Errors": [{"description": detail, "code": status}]}
    body: dict[str, Any] = {"schemas": [ERROR20], "detail": detail, "status": str(status)}
    if scim_type:
        body["scimType"] = scim_type
    return body


def error_response(state: TargetState, dialect: str, status: int, detail: str,
                   scim_type: str | None = None, headers=None) -> Response:
    if status == 401 and "plain-text-401" in state.config.quirks:
        return PlainTextResponse("Unauthorized", status_code=401, headers=headers)
    return JSONResponse(error_body(dialect, status, detail, scim_type), status_code=status,
                        media_type=content_type(state, dialect), headers=headers)


def scim_response(request: Request, body: Any, status: int = 200, headers=None) -> Response:
    dialect = dialect_of(request.url.path)
    return JSONResponse(body, status_code=status, headers=headers,
                        media_type=content_type(state_of(request), dialect))


async def require_auth(request: Request) -> None:
    token = state_of(request).config.token
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or value.strip() != token:
        raise ScimError(401, "Authentication failed: missing or invalid bearer token",
                        headers={"WWW-Authenticate": 'Bearer realm="demo-scim-target"'})


async def read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise ScimError(400, f"Request body is not valid JSON: {exc}", "invalidSyntax") from exc


def base_url(request: Request, dialect: str) -> str:
    return str(request.base_url).rstrip("/") + f"/scim/{dialect}"


def render(request: Request, rec: Record, dialect: str) -> dict:
    """Render a stored record in a dialect (schemas, id, attributes, groups, meta)."""
    store = store_of(request)
    base = base_url(request, dialect)
    extensions = [k for k in rec.attrs if k.startswith("urn:")]
    schemas = [CORE11 if dialect == V1 else CORE20[rec.kind]] + extensions
    out: dict[str, Any] = {"schemas": schemas, "id": rec.id}
    out.update(json.loads(json.dumps(rec.attrs)))
    if rec.kind == USER:
        groups = [{"value": g.id, "display": g.attrs.get("displayName"),
                   "$ref": f"{base}/Groups/{g.id}", "type": "direct"}
                  for g in store.groups_of(rec.id)]
        if groups:
            out["groups"] = groups
    out["meta"] = {"resourceType": rec.kind, "created": rec.created,
                   "lastModified": rec.last_modified, "location": f"{base}/{ENDPOINT[rec.kind]}/{rec.id}",
                   "version": f'W/"{rec.version}"'}
    return out


def select_attributes(resource: dict, attributes: str | None, excluded: str | None) -> dict:
    """Apply the 2.0 ``attributes`` / ``excludedAttributes`` parameters."""
    from .filters import get_key, split_urn
    if not attributes and not excluded:
        return resource
    names = [n.strip() for n in (attributes or excluded or "").split(",") if n.strip()]
    namespaces = {k for k in resource if k.startswith("urn:")}
    wanted: dict[str, set[str] | None] = {}
    for name in names:
        ns, rest = split_urn(name, namespaces)
        head, _, sub = rest.partition(".")
        top = get_key(resource, ns) if ns else get_key(resource, head)
        if top is None:
            continue
        child = (head if ns else sub) or None
        if top in wanted and wanted[top] is None:
            continue
        wanted[top] = None if child is None else (wanted.get(top) or set()) | {child}
    always = {"schemas", "id"}
    if attributes:
        out = {}
        for key, value in resource.items():
            if key in always or key == "meta":
                out[key] = value
            elif key in wanted:
                subs = wanted[key]
                out[key] = value if subs is None or not isinstance(value, dict) else \
                    {k: v for k, v in value.items() if k in subs}
        return out
    out = dict(resource)
    for key, subs in wanted.items():
        if key in always:
            continue
        if subs is None:
            out.pop(key, None)
        elif isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k not in subs}
    return out
