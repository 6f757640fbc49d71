"""Admin API (no auth) for tests: request log, store dump/seed, reset, fault rules."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter, ValidationError

from .common import state_of
from .faults import FaultRule
from .store import GROUP, USER, Record, StoreError, clean

router = APIRouter(prefix="/_admin")
_RULES = TypeAdapter(list[FaultRule])


def dump(rec: Record) -> dict:
    out = {"id": rec.id, **rec.attrs, "meta": {"created": rec.created,
           "lastModified": rec.last_modified, "version": rec.version}}
    if rec.password is not None:
        out["_password"] = rec.password  # test hook: lets tests verify password pushes
    return out


@router.get("/requests")
async def requests_(request: Request, since: int = 0):
    log = state_of(request).log
    return {"last_seq": log.seq, "requests": log.since(since)}


@router.get("/users")
async def users(request: Request):
    return [dump(r) for r in state_of(request).store.list(USER)]


@router.get("/groups")
async def groups(request: Request):
    return [dump(r) for r in state_of(request).store.list(GROUP)]


@router.post("/users", status_code=201)
async def seed_user(request: Request):
    """Create a user directly (neutral/2.0-style attributes), bypassing the log."""
    return _seed(request, USER, await request.json())


@router.post("/groups", status_code=201)
async def seed_group(request: Request):
    return _seed(request, GROUP, await request.json())


def _seed(request: Request, kind: str, body: Any):
    attrs, password, _ = clean(kind, body if isinstance(body, dict) else {})
    try:
        rec = state_of(request).store.create(kind, attrs, password)
    except StoreError as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    return JSONResponse(dump(rec), status_code=201)


@router.post("/reset", status_code=204)
async def reset(request: Request):
    """Empty the store, the request log (sequence numbers keep growing) and the fault rules."""
    state = state_of(request)
    state.store.reset()
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


@router.get("/config")
async def config(request: Request):
    cfg = state_of(request).config
    return {"name": cfg.name, "quirks": sorted(cfg.quirks)}
