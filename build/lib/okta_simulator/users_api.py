"""`GET /api/v1/users` (spec operation listUsers), each user rendered as `GET /api/v1/users/{id}` renders it.

- `filter` (see `userfilter`): returns DEPROVISIONED users too, as the spec says; an invalid one is 400 E0000031.
- Neither `filter` nor `q`: every user but the DEPROVISIONED ones.
- `q`: a case-insensitive prefix of firstName, lastName or email, DEPROVISIONED users left out, `limit` 10 by
  default and no `next` link (the spec: "This doesn't support pagination").
- `limit`: default 200; a larger value is served as 200 (Okta documents 200 as the maximum); < 1 is 400.
- `after`: the id of the last user of the previous page; users are in id order, so a page starts with the first
  id after it (that user need not exist any more). `next` links carry `limit`, `filter` and `after`.
- `search`, `sortBy`, `sortOrder` and `fields` are not simulated: 400 rather than a wrong answer.
An injected fault with an `edit` changes the answer (see `edit_answer`).

`POST /api/v1/users` (createUser): `profile`, `credentials.password.value` (kept only as a hash; the answer shows
`credentials.password: {}`) and `groupIds`. `activate` (default true) gives ACTIVE with a password and PROVISIONED
without one (Okta would e-mail an activation link); `activate=false` gives STAGED. `provider` and `nextLogin` are not
simulated (400).
"""
from __future__ import annotations

from fastapi import APIRouter, Body, Query, Request

from . import groups_actions, users_actions
from .domain import User
from .errors import invalid
from .listing import page_after_id, respond
from .serialize import user_json
from .sim import Simulator
from .userfilter import parse_user_filter

MAX_LIMIT = 200
Q_LIMIT = 10
NOT_SIMULATED = ("search", "sortBy", "sortOrder", "fields")


def _id(user: User) -> str:
    return user.id


def _q_matches(user: User, q: str) -> bool:
    low = q.lower()
    return any(str(user.profile.get(k, "")).lower().startswith(low) for k in ("firstName", "lastName", "email"))


def select_users(sim: Simulator, filter_text: str | None, q: str | None) -> list[User]:
    """The users a listing answers with, over all its pages, in id order."""
    users = sim.org.users
    if filter_text and filter_text.strip():
        flt = parse_user_filter(filter_text)
        ids = flt.candidate_ids()
        pool = users.values() if ids is None else [users[i] for i in ids if i in users]
        found = [u for u in pool if flt.matches(u)]
    else:
        found = [u for u in users.values() if u.status != "DEPROVISIONED"]
    if q:
        found = [u for u in found if u.status != "DEPROVISIONED" and _q_matches(u, q)]
    return sorted(found, key=_id)


def edit_answer(sim: Simulator, edit: str, body: list[dict], matched: list[User]) -> list[dict]:
    """`drop_first`: the first user is left out; `repeat_first`: it appears twice; `add_unasked`: one more user the
    query did not ask for is appended (the first by id outside its result, else the first not on this page; none
    when every user is on the page)."""
    if edit == "drop_first":
        return body[1:]
    if edit == "repeat_first":
        return body[:1] + body
    asked = {u.id for u in matched}
    shown = {u["id"] for u in body}
    users = sorted(sim.org.users.values(), key=_id)
    extra = next((u for u in users if u.id not in asked), None) or next((u for u in users if u.id not in shown), None)
    return body + [user_json(extra, sim.settings.org_url)] if extra is not None else body


def build_users_router(sim: Simulator) -> APIRouter:
    r = APIRouter()

    @r.get("/users")
    async def list_users(request: Request, filter: str | None = None, q: str | None = None,
                         after: str | None = None, limit: int | None = Query(None, ge=1)):
        for name in NOT_SIMULATED:
            if name in request.query_params:
                raise invalid(f"{name}: not simulated; use filter")
        matched = select_users(sim, filter, q)
        size = min(limit or (Q_LIMIT if q else MAX_LIMIT), MAX_LIMIT)
        chunk, nxt = (matched[:size], None) if q else page_after_id(matched, _id, after, size)
        body = [user_json(u, sim.settings.org_url) for u in chunk]
        fault = getattr(request.state, "fault", None)
        if fault is not None and fault.edit:
            body = edit_answer(sim, fault.edit, body, matched)
        params = {"limit": request.query_params.get("limit"), "filter": filter, "after": nxt}
        return respond(body, sim, request, params if nxt else None)

    @r.post("/users")
    async def create_user(request: Request, body: dict = Body(...), activate: bool = True):
        for name in ("provider", "nextLogin"):
            if name in request.query_params:
                raise invalid(f"{name}: not simulated")
        profile = body.get("profile")
        if not isinstance(profile, dict):
            raise invalid("profile: The field cannot be left blank")
        password = ((body.get("credentials") or {}).get("password") or {}).get("value")
        status = ("ACTIVE" if password is not None else "PROVISIONED") if activate else "STAGED"
        token_id = request.state.token_id
        group_ids = body.get("groupIds") or []
        for group_id in group_ids:
            groups_actions.get_group(sim, group_id)  # all known before anything is created
        user = users_actions.create_user(sim, profile, status, password, token_id)
        for group_id in group_ids:
            groups_actions.add_member(sim, group_id, user.id)
        return user_json(user, sim.settings.org_url)

    return r
