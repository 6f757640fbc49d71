"""Planning a batch of (app, user) keys from the state Okta holds, in two database round trips for the whole batch.

1. **read the rows**: one ``find`` reads each key's row: its assignment, its plan version, and the newest user
   ``lastUpdated`` an earlier plan of the user, for any app, was built from (``user_built_max``).
2. **read Okta**: keys with a ``user.*`` event read their user by id (once per user per batch, shared by its apps):
   no batched answer can prove it already holds that change. The others (membership events, syncs) take the user
   from the sync's page or from one filtered listing per 100 users, trusted only when its ``lastUpdated`` is not
   older than ``user_built_max``; else, and for an id the listing left out, by id (never deactivated on absence alone).
   Only a 404 by id means the user is gone; an answer that is not the user with a status Okta documents (an empty
   200, no ``status``, an unknown one) fails its key as transient, audited with what was wrong, and changes nothing.
3. **commit**: one bulk write gives each key its next version, records the read's ``lastUpdated`` and the batch's
   membership change, each only if the row is still as read and no earlier plan was built from newer user data.
   A key that did not commit (another batch planned it meanwhile) is read again and tried once more.
4. **decide** (``state_table``) and **map** (``mapping``): the plan.

So a plan that goes out was built from user data at least as new as every earlier plan of its key, its version is
the next after theirs, and the dispatcher's version check keeps that order on the target (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import Reason, ScimOperationPlanned
from okta_bridge.okta_client import OktaBadAnswerError, OktaTransientError, user_problem
from okta_bridge.stores.assignments import UNKNOWN_UPDATED, Commit, Landing, MembershipChange, Row, fold
from okta_bridge.stores.groups import micros
from okta_bridge.telemetry import ATTR
from translator.mapping import map_user
from translator.ports import AssignmentStore, OktaReader
from translator.state_table import decide

__all__ = ["COMMIT_ROUNDS", "KeyResult", "KeyWork", "Planner", "Source"]

tracer = trace.get_tracer("translator")
COMMIT_ROUNDS = 3  # a key planned by another batch meanwhile is read again, at most this many times in one batch


@dataclass(eq=False)
class Source:
    """One message's part in a key's plan: its event, its cause, and the trace it belongs to."""
    handle: Any  # the caller's own (its delivery)
    cause: str
    event_uuid: str | None = None
    context: otel_context.Context | None = None


@dataclass(eq=False)
class KeyWork:
    """Everything a batch says about one (app, user) key."""
    app_id: str
    user_id: str
    sources: list[Source] = field(default_factory=list)
    change: MembershipChange | None = None
    by_id: bool = False  # a user.* event: read the user by id
    listed: dict[str, Any] | None = None  # a sync's app user, the user embedded: planned from the page if fresh enough
    app_profile: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.app_id, self.user_id

    @property
    def cause(self) -> str:
        return self.sources[0].cause if self.sources else "plan"

    @property
    def context(self) -> otel_context.Context | None:
        return self.sources[0].context if self.sources else None

    def fold(self, *, assigned: bool | None = None, app_username: str | None = None, as_of: int | None = None,
             app_profile: dict[str, Any] | None = None) -> None:
        """Adds one membership event (or an app-user read's profile): for each field, the newest wins."""
        c = self.change or MembershipChange()
        if assigned is not None and (c.assigned is None or _later(as_of, c.assigned_as_of)):
            c = replace(c, assigned=assigned, assigned_as_of=as_of)
        if app_username is not None and (c.app_username is None or _later(as_of, c.username_as_of)):
            c = replace(c, app_username=app_username, username_as_of=as_of)
        if app_profile is not None and (c.app_profile is None or _later(as_of, c.app_profile_as_of)):
            c = replace(c, app_profile=app_profile, app_profile_as_of=as_of)
        self.change = c


@dataclass
class KeyResult:
    work: KeyWork
    reason: Reason  # planned, nothing_to_send, or the failure's code
    detail: str
    version: int | None = None
    plan: ScimOperationPlanned | None = None
    failure: Exception | None = None  # settled by the caller with the outcome policy


@dataclass
class _Read:
    user: dict[str, Any] | None  # None: Okta confirmed the user is gone (404)
    updated: int  # lastUpdated in µs (UNKNOWN_UPDATED for a gone user)
    by_id: bool
    unusable: str | None = None  # Okta answered, but not with a user the state table can read


@dataclass
class Planner:
    org: str
    apps: dict[str, AppConnector]
    store: AssignmentStore
    okta: OktaReader

    async def plan(self, works: list[KeyWork]) -> list[KeyResult]:
        """One plan (or why not) per key; nothing here publishes."""
        results: dict[tuple[str, str], KeyResult] = {}
        contexts = {w.user_id: w.context for w in reversed(works)}  # a user's reads join its first event's trace
        reads: dict[str, _Read] = {}
        pending = works
        for _ in range(COMMIT_ROUNDS):
            if not pending:
                break
            rows = await self.store.read_rows([w.key for w in pending])
            await self._read(pending, rows, reads, contexts)
            going: list[tuple[KeyWork, Row, _Read]] = []
            for w in pending:
                row, read = rows[w.key], reads[w.user_id]
                if read.unusable or read.updated < row.user_built_max:
                    results[w.key] = _failed(w, read.unusable or f"Okta answered user {w.user_id} with older data "
                                                                 "than an earlier plan used; planned again")
                else:
                    going.append((w, row, read))
            landed = await self.store.commit([Commit(row, row.version + 1, read.updated, w.change)
                                              for w, row, read in going])
            pending = []
            for (w, row, read), landing in zip(going, landed):
                if landing is Landing.LANDED:
                    results[w.key] = self._decide(w, fold(row, w.change)[0], row.version + 1, read)
                elif landing is Landing.REFUSED:  # this key alone goes through the retry tiers
                    results[w.key] = KeyResult(w, Reason.INTERNAL, f"the database refused the plan of key "
                                               f"{w.app_id}/{w.user_id}; planned again", None,
                                               failure=RuntimeError("the database refused one key's commit"))
                else:
                    pending.append(w)  # planned by another batch meanwhile: read its row again
        for w in pending:
            results[w.key] = _failed(w, f"key {w.app_id}/{w.user_id} kept changing while it was planned; planned "
                                        "again")
        return [results[w.key] for w in works]

    # --- reading -----------------------------------------------------------------------------------------------------
    async def _read(self, works: list[KeyWork], rows: dict[tuple[str, str], Row], reads: dict[str, _Read],
                    contexts: dict[str, Any]) -> None:
        """Fills ``reads`` for every user of ``works`` whose read is missing or older than an earlier plan's."""
        floor = {w.user_id: rows[w.key].user_built_max for w in works}  # over the user's rows of every app
        fresh = {u for u, r in reads.items() if r.unusable is None and r.updated >= floor.get(u, -1)}
        by_id = sorted({w.user_id for w in works if w.by_id} - fresh)
        for w in works:
            embedded = (w.listed or {}).get("_embedded", {}).get("user") if w.listed else None
            if w.user_id in fresh or w.user_id in by_id or not _usable(embedded, w.user_id):
                continue
            if _updated(embedded) >= floor[w.user_id]:
                reads[w.user_id] = _Read(embedded, _updated(embedded), by_id=False)
                fresh.add(w.user_id)
        batched = sorted({w.user_id for w in works} - fresh - set(by_id))
        reads.update(await self._by_id(by_id, contexts))
        if batched:
            with tracer.start_as_current_span("okta read users (batch)", context=otel_context.Context(),
                                              links=_links(works)) as span:
                span.set_attribute("okta.users", len(batched))
                found = await self.okta.list_users_by_ids(batched)
            for user_id, user in found.items():
                if _usable(user, user_id):
                    reads[user_id] = _Read(user, _updated(user), by_id=False)
        stale = [u for u in batched if u not in reads or reads[u].updated < floor.get(u, -1)]
        reads.update(await self._by_id(stale, contexts))  # absent ids: confirmed by id, never deactivated on absence

    async def _by_id(self, user_ids: list[str], contexts: dict[str, Any]) -> dict[str, _Read]:
        """Each read by id joins the trace of its user's first event in the batch."""
        async def one(user_id: str) -> tuple[str, dict[str, Any] | None, str | None]:
            token = otel_context.attach(contexts[user_id]) if contexts.get(user_id) is not None else None
            try:
                user = (await self.okta.get_users([user_id]))[user_id]
            except OktaBadAnswerError as exc:  # this user's answer alone: the others of the batch go on
                return user_id, None, str(exc)
            finally:
                if token is not None:
                    otel_context.detach(token)
            return user_id, user, None if user is None else user_problem(user, user_id)

        out = {}
        for user_id, user, problem in await asyncio.gather(*(one(u) for u in user_ids)):
            if problem is not None:  # only a 404 means gone: anything else unreadable is read again later
                out[user_id] = _Read(None, -1, by_id=True, unusable=f"Okta's answer cannot be planned from: {problem}; "
                                                                    "read again later (nothing changed)")
            elif user is None:
                out[user_id] = _Read(None, UNKNOWN_UPDATED, by_id=True)
            else:
                out[user_id] = _Read(user, _updated(user), by_id=True)
        return out

    # --- deciding ----------------------------------------------------------------------------------------------------
    def _decide(self, w: KeyWork, row: Row, version: int, read: _Read) -> KeyResult:
        app = self.apps[w.app_id]
        decision = decide(read.user.get("status") if read.user else None, row.assigned, app)
        if decision.action is None:
            return KeyResult(w, Reason.NOTHING_TO_SEND, decision.reason, version)
        # the last known app-user profile travels with the row, so an event-driven plan carries appProfile.* too
        app_profile = row.app_profile if row.app_profile is not None else w.app_profile
        attrs, unique = map_user(app, read.user or {"id": w.user_id, "profile": {}}, row.app_username, app_profile)
        primary = w.sources[0] if w.sources else None
        plan = ScimOperationPlanned(org=self.org, app_id=w.app_id, okta_user_id=w.user_id, version=version,
                                    action=decision.action, attributes=attrs, unique_value=unique, cause=w.cause,
                                    event_uuid=primary.event_uuid if primary else None)
        return KeyResult(w, Reason.PLANNED, f"{decision.action.value}: {decision.reason}", version, plan)


def plan_span_attributes(span: trace.Span, result: KeyResult) -> None:
    span.set_attribute(ATTR.APP_ID, result.work.app_id)
    span.set_attribute(ATTR.USER_ID, result.work.user_id)
    if result.version is not None:
        span.set_attribute(ATTR.PLAN_VERSION, result.version)
    if result.plan is not None:
        span.set_attribute(ATTR.PLAN_ACTION, result.plan.action.value)


def _failed(w: KeyWork, why: str) -> KeyResult:
    return KeyResult(w, Reason.OKTA_TRANSIENT, why, None, failure=OktaTransientError(why))


def _later(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a >= b


def _usable(user: Any, user_id: str) -> bool:
    """An answer the state table can read: the user asked for, with a status Okta documents."""
    return user_problem(user, user_id) is None


def _updated(user: dict[str, Any]) -> int:
    value = user.get("lastUpdated")
    try:
        return micros(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return 0  # no usable lastUpdated: older than anything an earlier plan recorded


def _links(works) -> list[trace.Link]:
    links = []
    for w in works:
        for s in w.sources:
            span = trace.get_current_span(s.context) if s.context is not None else None
            if span is not None and span.get_span_context().is_valid and len(links) < 128:
                links.append(trace.Link(span.get_span_context()))
    return links
