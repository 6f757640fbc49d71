"""Admin API (no auth) for tests: request log, store dump/seed and reset (per tenant: ``?tenant=``, the
default tenant when absent), fault rules, run-time config (latency), in-flight gauges."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .common import TargetState, state_of
from .faults import FaultRule
from .store import GROUP, USER, Record, Store, StoreError, clean
from .tenants import ALL, DEFAULT, valid_name

router = APIRouter(prefix="/_admin")
_RULES = TypeAdapter(list[FaultRule])


class ConfigChange(BaseModel):
    model_config = ConfigDict(frozen=True)
    latency_ms: int | None = Field(None, ge=0, le=600_000, description="added to every SCIM answer")


def _tenant(name: str | None) -> str:
    if name is None:
        return DEFAULT
    if not valid_name(name):
        raise HTTPException(400, f"tenant must match [A-Za-z0-9_-]+, got {name!r}")
    return name


def _store(request: Request, tenant: str | None) -> Store:
    return state_of(request).tenants.store(_tenant(tenant))


def dump(rec: Record) -> dict:
    out = {"id": rec.id, **rec.attrs, "meta": {"created": rec.created,
           "lastModified": rec.last_modified, "version": rec.version}}
    if rec.password is not None:
        out["_password"] = rec.password  # test hook: lets tests verify password pushes
    return out


@router.get("/requests")
async def requests_(request: Request, since: int = 0):
    """``{"last_seq": n, "requests": [entries with seq > since]}``; each entry names its ``tenant``."""
    log = state_of(request).log
    return JSONResponse({"last_seq": log.seq, "requests": log.since(since)})  # plain JSON: no encoder pass


@router.get("/users")
async def users(request: Request, tenant: str | None = None):
    return [dump(r) for r in _store(request, tenant).list(USER)]


@router.get("/groups")
async def groups(request: Request, tenant: str | None = None):
    return [dump(r) for r in _store(request, tenant).list(GROUP)]


@router.post("/users", status_code=201)
async def seed_user(request: Request, tenant: str | None = None):
    """Create a user directly (neutral/2.0-style attributes), bypassing the log."""
    return _seed(_store(request, tenant), USER, await request.json())


@router.post("/groups", status_code=201)
async def seed_group(request: Request, tenant: str | None = None):
    return _seed(_store(request, tenant), GROUP, await request.json())


def _seed(store: Store, kind: str, body: Any):
    attrs, password, _ = clean(kind, body if isinstance(body, dict) else {})
    try:
        rec = store.create(kind, attrs, password)
    except StoreError as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    return JSONResponse(dump(rec), status_code=201)


@router.post("/reset", status_code=204)
async def reset(request: Request, tenant: str | None = None):
    """Without ``tenant`` (or ``tenant=default``): empty the default tenant's store, the request log
    (sequence numbers keep growing) and the fault rules, as before tenants existed. ``tenant=X``: only
    X's store. ``tenant=*``: every tenant's store, the log and the fault rules."""
    state = state_of(request)
    if tenant == ALL:
        for name in state.tenants.names():
            state.tenants.store(name).reset()
    else:
        _store(request, tenant).reset()
    if tenant in (None, DEFAULT, ALL):
        state.log.clear()
        state.faults.clear()
    return Response(status_code=204)


@router.get("/faults")
async def list_faults(request: Request):
    return [r.model_dump() for r in state_of(request).faults.rules]


@router.post("/faults")
async def add_faults(request: Request):
    """Body: one rule, a list of rules, or {"rules": [...]}."""
    body = await request.json()
    if isinstance(body, dict):
        body = body.get("rules", [body])
    try:
        rules = _RULES.validate_python(body)
    except ValidationError as exc:
        return JSONResponse({"detail": exc.errors(include_url=False, include_context=False)},
                            status_code=422)
    added = state_of(request).faults.add(rules)
    return {"faults": [r.model_dump() for r in added]}


@router.delete("/faults", status_code=204)
async def clear_faults(request: Request):
    state_of(request).faults.clear()
    return Response(status_code=204)


def _config(state: TargetState) -> dict:
    return {"name": state.config.name, "quirks": sorted(state.config.quirks), "latency_ms": state.latency_ms,
            "log_entries": state.log.max_entries}


@router.get("/config")
async def config(request: Request):
    return _config(state_of(request))


@router.post("/config")
async def change_config(request: Request, change: ConfigChange):
    """``{"latency_ms": n}``: every SCIM answer from now on waits n ms (requests already waiting keep theirs)."""
    state = state_of(request)
    if change.latency_ms is not None:
        state.latency_ms = change.latency_ms
    return _config(state)


@router.get("/inflight")
async def inflight(request: Request):
    """``{"<tenant>": {"current": n, "peak": n}, ..., "*": {...over all tenants...}}``."""
    return state_of(request).inflight.snapshot()


@router.post("/inflight/reset")
async def reset_inflight(request: Request):
    """Every peak back to its current value; answers as GET /_admin/inflight."""
    state = state_of(request)
    state.inflight.reset_peaks()
    return state.inflight.snapshot()
