"""The Okta Management API subset a provisioning bridge reads (and the one write it makes)."""
from __future__ import annotations

import re

from fastapi import APIRouter, Body, Query, Request

from . import apps_actions, groups_actions, users_actions
from .errors import invalid
from .listing import page_by_id as _page_by_id
from .listing import respond as _respond
from .push_mappings import build_push_mappings_router
from .serialize import app_json, app_user_json, group_json, user_json
from .sim import Simulator
from .users_api import build_users_router


_NAME_SEARCH = re.compile(r'^\s*profile\.name\s+(eq|sw|co)\s+"((?:[^"\\]|\\.)*)"\s*$')


def _name_matches(name: str, search: str) -> bool:
    match = _NAME_SEARCH.match(search)
    if match is None:
        raise invalid("search: only profile.name eq|sw|co \"…\" is simulated")
    op, value = match.group(1), match.group(2).replace('\\"', '"')
    if op == "eq":
        return name.lower() == value.lower()  # Okta search is case-insensitive
    if op == "sw":
        return name.lower().startswith(value.lower())
    return value.lower() in name.lower()


def build_router(sim: Simulator) -> APIRouter:
    r = APIRouter(prefix="/api/v1")
    base = lambda: sim.settings.org_url  # noqa: E731

    @r.get("/logs")
    async def list_logs(request: Request, since: str | None = None, until: str | None = None, after: str | None = None,
                  filter: str | None = None, q: str | None = None, limit: int = Query(100, ge=0, le=1000),
                  sortOrder: str = Query("ASCENDING", pattern="^(ASCENDING|DESCENDING)$")):
        try:
            page = sim.log.query(sim.now(), since, until, after, limit, sortOrder, filter)
        except ValueError as exc:
            raise invalid(f"since/until: {exc}") from None
        keep = {"limit": request.query_params.get("limit"), "sortOrder": request.query_params.get("sortOrder"),
                "filter": filter, "q": q}
        if until is not None or sortOrder == "DESCENDING":
            keep.update(since=since, until=until)
        nxt = {**keep, "after": page.next_cursor} if page.next_cursor else None
        return _respond(page.events, sim, request, nxt)

    r.include_router(build_users_router(sim))

    @r.get("/users/{id_or_login}")
    async def get_user(id_or_login: str):
        return user_json(users_actions.get_user(sim, id_or_login), base())

    @r.get("/apps/{app_id}")
    async def get_app(app_id: str):
        return app_json(apps_actions.get_app(sim, app_id), base())

    def _app_user_body(au, expand: str | None) -> dict:
        embedded = user_json(sim.org.users[au.user_id], base()) if expand == "user" else None
        return app_user_json(au, base(), embedded)

    @r.get("/apps/{app_id}/users")
    async def list_app_users(request: Request, app_id: str, after: str | None = None, q: str | None = None,
                       limit: int = Query(50, ge=1, le=500), expand: str | None = None):
        apps_actions.get_app(sim, app_id)
        items = sim.org.app_users_of(app_id)
        if q:
            items = [au for au in items if au.user_name.lower().startswith(q.lower())]
        chunk, nxt = _page_by_id(items, lambda au: au.user_id, after, limit)
        params = {"limit": request.query_params.get("limit"), "expand": expand, "q": q, "after": nxt}
        return _respond([_app_user_body(au, expand) for au in chunk], sim, request, params if nxt else None)

    @r.get("/apps/{app_id}/users/{user_id}")
    async def get_app_user(app_id: str, user_id: str, expand: str | None = None):
        return _app_user_body(apps_actions.get_app_user(sim, app_id, user_id), expand)

    @r.post("/apps/{app_id}/users/{user_id}")
    async def update_app_user(request: Request, app_id: str, user_id: str, body: dict = Body(...)):
        token_id = request.state.token_id
        au = apps_actions.get_app_user(sim, app_id, user_id)
        user_name = (body.get("credentials") or {}).get("userName")
        if user_name and user_name != au.user_name:
            apps_actions.change_username(sim, app_id, user_id, user_name, token_id)
        if body.get("profile") is not None:
            apps_actions.update_app_user_profile(sim, app_id, user_id, body["profile"], token_id)
        return app_user_json(au, base())

    @r.get("/apps/{app_id}/groups")
    async def list_app_groups(request: Request, app_id: str, after: str | None = None,
                        limit: int = Query(20, ge=1, le=200)):
        groups = sim.org.groups_of_app(apps_actions.get_app(sim, app_id).id)
        chunk, nxt = _page_by_id(groups, lambda g: g.id, after, limit)
        body = [{"id": g.id, "priority": i, "profile": {}, "lastUpdated": group_json(g, base())["lastUpdated"],
                 "_links": {"group": {"href": f"{base()}/api/v1/groups/{g.id}"},
                            "app": {"href": f"{base()}/api/v1/apps/{app_id}"}}} for i, g in enumerate(chunk)]
        params = {"limit": request.query_params.get("limit"), "after": nxt}
        return _respond(body, sim, request, params if nxt else None)

    @r.get("/groups")
    async def list_groups(request: Request, q: str | None = None, search: str | None = None,
                          after: str | None = None, limit: int = Query(10000, ge=1, le=10000)):
        """``q`` (name prefix) and ``search`` on ``profile.name`` with ``eq`` / ``sw`` / ``co``, as the spec lists."""
        groups = sorted(sim.org.groups.values(), key=lambda g: g.id)
        if q:
            groups = [g for g in groups if g.name.lower().startswith(q.lower())]
        if search:
            groups = [g for g in groups if _name_matches(g.name, search)]
        chunk, nxt = _page_by_id(groups, lambda g: g.id, after, limit)
        params = {"limit": request.query_params.get("limit"), "q": q, "search": search, "after": nxt}
        return _respond([group_json(g, base()) for g in chunk], sim, request, params if nxt else None)

    @r.get("/groups/{group_id}")
    async def get_group(group_id: str):
        return group_json(groups_actions.get_group(sim, group_id), base())

    @r.get("/groups/{group_id}/users")
    async def list_group_users(request: Request, group_id: str, after: str | None = None,
                         limit: int = Query(1000, ge=1, le=10000)):
        group = groups_actions.get_group(sim, group_id)
        users = [sim.org.users[u] for u in group.members if u in sim.org.users]
        chunk, nxt = _page_by_id(users, lambda u: u.id, after, limit)
        params = {"limit": request.query_params.get("limit"), "after": nxt}
        return _respond([user_json(u, base()) for u in chunk], sim, request, params if nxt else None)

    r.include_router(build_push_mappings_router(sim))
    return r
