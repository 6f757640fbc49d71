"""One trace per Okta event, end to end: the four services export to an in-test OTLP receiver and the spans of each
concurrent assignment must form one unbroken tree, free of user names and emails, matching the audit trail. Work shared
by many events (a batched Okta read, a batch's audit message, an audit insert) is its own trace, linked to each
event's spans."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Iterable
from urllib.parse import quote, quote_plus

import httpx
import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually, jira_connector
from tests.e2e.otlp_receiver import OtlpReceiver, SpanRecord

pytestmark = pytest.mark.e2e

ASSIGN = "application.user_membership.add"
ROOT_NAME = f"okta event {ASSIGN}"
POLL_NAME = "okta poll System Log"
SERVICES = {"queue-poller", "translator", "scim-dispatcher"}  # the audit-recorder's work is shared: linked
USER_ID = "okta.user.id"
CONCURRENT = 5


class Trace:
    """The spans of one trace, indexed by id, with helpers to walk parent links."""

    def __init__(self, trace_id: str, spans: Iterable[SpanRecord]) -> None:
        self.trace_id = trace_id
        self.spans = [s for s in spans if s.trace_id == trace_id]
        self.by_id = {s.span_id: s for s in self.spans}

    def services(self) -> set[str | None]:
        return {s.service for s in self.spans}

    def where(self, *, service: str | None = None, kind: str | None = None, name: str | None = None,
              prefix: str | None = None) -> list[SpanRecord]:
        out = []
        for s in self.spans:
            if service and s.service != service or kind and s.kind != kind or name and s.name != name:
                continue
            if prefix and not s.name.startswith(prefix):
                continue
            out.append(s)
        return out

    def path_up(self, span: SpanRecord, ancestor: SpanRecord) -> list[SpanRecord] | None:
        """The spans strictly between ``span`` and ``ancestor`` (nearest first), or None if not an ancestor."""
        between, current = [], span
        while current.parent_span_id:
            parent = self.by_id.get(current.parent_span_id)
            if parent is None:
                return None  # broken chain: the parent was never exported in this trace
            if parent.span_id == ancestor.span_id:
                return between
            between.append(parent)
            current = parent
        return None

    def descends(self, span: SpanRecord, ancestor: SpanRecord, via: set[str]) -> bool:
        """``span`` descends from ``ancestor`` through spans of the services ``via`` only."""
        between = self.path_up(span, ancestor)
        return between is not None and all(s.service in via for s in between)

    def dump(self) -> str:
        children: dict[str | None, list[SpanRecord]] = defaultdict(list)
        for s in self.spans:
            children[s.parent_span_id if s.parent_span_id in self.by_id else None].append(s)
        lines: list[str] = [f"trace {self.trace_id}"]

        def walk(s: SpanRecord, depth: int) -> None:
            attrs = {k: v for k, v in s.attributes.items() if k.startswith(("okta.", "bridge.", "messaging.dest"))}
            orphan = " (parent missing)" if s.parent_span_id and s.parent_span_id not in self.by_id else ""
            links = f" links={[(ln.trace_id[:8], ln.span_id) for ln in s.links]}" if s.links else ""
            lines.append(f"{'  ' * depth}{s.name} [{s.service} {s.kind}] {s.span_id}{orphan} {attrs}{links}")
            for child in sorted(children.get(s.span_id, []), key=lambda c: c.start_ns):
                walk(child, depth + 1)

        for root in sorted(children.get(None, []), key=lambda c: c.start_ns):
            walk(root, 0)
        return "\n".join(lines)


def _one(spans: list[SpanRecord], what: str, tr: Trace) -> SpanRecord:
    assert len(spans) == 1, f"expected exactly one {what}, found {len(spans)}\n{tr.dump()}"
    return spans[0]


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, bytes):
        yield value.decode(errors="replace")
    elif value is not None:
        yield str(value)


async def test_each_event_is_one_trace_through_all_services(stack):
    with OtlpReceiver() as rx:
        stack.extra_env = {**stack.extra_env, "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
                           "OTEL_BSP_SCHEDULE_DELAY": "200"}
        stack.start_fixtures()
        async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target, \
                httpx.AsyncClient(timeout=10) as http:
            app_id = await okta.create_app("Jira", "jira")
            logins = [f"user{n}@example.com" for n in range(CONCURRENT + 1)]
            ids = [await okta.create_user({"login": login, "email": login, "firstName": f"First{n}",
                                           "lastName": f"Last{n}"}) for n, login in enumerate(logins)]
            await okta.assign_user(app_id, ids[0])  # synced by the initial full sync
            stack.write_connectors([jira_connector(stack, app_id)])
            stack.start_services()

            async def target_has(names: set[str]):
                users = {u["userName"].lower(): u for u in await target.users()}
                return names <= users.keys() and all(users[n]["active"] is True for n in names)
            await eventually(lambda: target_has({logins[0]}), what="initial sync")

            assigned = dict(zip(ids[1:], logins[1:]))
            await asyncio.gather(*(okta.assign_user(app_id, uid) for uid in assigned))
            await eventually(lambda: target_has(set(assigned.values())), what="concurrent assignments by the log")

            # the System Log tells which event assigned which user (independently of the bridge)
            event_of: dict[str, str] = {}
            for event in await okta.events():
                if event["eventType"] == ASSIGN:
                    user = next(t["id"] for t in event["target"] if t["type"] == "User")
                    if user in assigned:
                        event_of[user] = event["uuid"]
            assert event_of.keys() == assigned.keys()

            async def trail(uid: str) -> list[dict]:
                return (await http.get(f"{stack.audit_url}/audit", params={"user": uid},
                                       headers=stack.audit_headers)).json()["items"]

            async def all_applied():
                steps = [{r["step"] for r in await trail(uid)} for uid in assigned]
                return all({"received", "planned", "applied"} <= s for s in steps)
            await eventually(all_applied, what="audit trail of every assignment")

            roots_by_uuid = await _settle_spans(rx, set(event_of.values()))

    spans = rx.spans()
    assert not rx.errors, rx.errors

    # -- every event is its own trace -------------------------------------------------------------------------
    roots = {}
    for uid, uuid in event_of.items():
        found = roots_by_uuid.get(uuid, [])
        assert len(found) == 1, f"event {uuid}: expected one root span {ROOT_NAME!r}, found {len(found)}"
        roots[uid] = found[0]
    assert len({r.trace_id for r in roots.values()}) == len(roots), "two events share a trace"

    traces = {uid: Trace(root.trace_id, spans) for uid, root in roots.items()}
    audit_publishes = [s for s in spans if s.kind == "PRODUCER"
                       and s.attributes.get("messaging.destination.name") == "bridge.audit"]
    assert audit_publishes and all(s.parent_span_id is None for s in audit_publishes)
    for publish in audit_publishes:  # the recorder consumes each batch message in the batch's own trace
        consumed = [c for c in spans if c.parent_span_id == publish.span_id and c.service == "audit-recorder"]
        assert len(consumed) <= 1
    by_id_all = {s.span_id: s for s in spans}
    for uid, root in roots.items():
        tr = traces[uid]
        # the root: a new trace started by the poller, linked to the poll that found the event
        assert root.name == ROOT_NAME and root.service == "queue-poller" and root.parent_span_id is None, tr.dump()
        assert root.attributes.get("okta.event.type") == ASSIGN
        assert len(root.links) == 1, f"event root should link to its poll span\n{tr.dump()}"
        poll = by_id_all.get(root.links[0].span_id)
        assert poll is not None and poll.trace_id == root.links[0].trace_id, "linked poll span was not exported"
        assert poll.name == POLL_NAME and poll.service == "queue-poller" and poll.parent_span_id is None
        assert poll.trace_id != root.trace_id, "the poll must be its own trace"
        poll_trace = Trace(poll.trace_id, spans)
        assert not [s for s in poll_trace.spans if "okta.event.uuid" in s.attributes or s.service != "queue-poller"], \
            f"the poll trace holds event work\n{poll_trace.dump()}"

        assert tr.services() == SERVICES, f"services in the trace: {tr.services()}\n{tr.dump()}"

        # poller root -> (publish) -> translator consume
        consume_t = _one(tr.where(service="translator", kind="CONSUMER"), "translator consumer span", tr)
        assert tr.descends(consume_t, root, {"queue-poller"}), f"translator consume not under the root\n{tr.dump()}"
        assert consume_t.attributes.get(USER_ID) == uid, tr.dump()
        # -> an Okta read: the batched read of the users of a batch, its own trace, linked to this consume span
        batch_reads = [b for b in spans if b.name == "okta read users (batch)" and b.service == "translator"
                       and (consume_t.trace_id, consume_t.span_id) in {(ln.trace_id, ln.span_id) for ln in b.links}]
        assert len(batch_reads) == 1 and batch_reads[0].parent_span_id is None, tr.dump()
        read_calls = [c for c in spans if c.parent_span_id == batch_reads[0].span_id and c.kind == "CLIENT"]
        assert [c.name for c in read_calls] == ["okta GET /api/v1/users"], read_calls
        # -> the plan publish
        plan_publish = [s for s in tr.where(service="translator", kind="PRODUCER")
                        if s.attributes.get("messaging.destination.name") == "bridge.plans"]
        assert plan_publish and all(tr.descends(s, consume_t, {"translator"}) for s in plan_publish), tr.dump()
        # -> dispatcher consume, through the plan publish
        consume_d = _one(tr.where(service="scim-dispatcher", kind="CONSUMER"), "dispatcher consumer span", tr)
        between = tr.path_up(consume_d, consume_t)
        assert between is not None and all(s.service == "translator" for s in between) \
            and any(s in plan_publish for s in between), f"dispatcher consume not under the plan publish\n{tr.dump()}"
        # -> apply -> SCIM HTTP client spans
        apply = _one(tr.where(service="scim-dispatcher", name="apply upsert"), "'apply upsert' span", tr)
        assert apply.attributes.get(USER_ID) == uid
        assert tr.descends(apply, consume_d, {"scim-dispatcher"}), tr.dump()
        scim = tr.where(service="scim-dispatcher", kind="CLIENT", prefix="SCIM ")
        assert "SCIM POST /Users" in {s.name for s in scim}, f"no SCIM create span\n{tr.dump()}"
        assert all(tr.descends(s, apply, {"scim-dispatcher"}) for s in scim), tr.dump()
        # every service's audit records go out in batch messages of their own, each linked to this event's span
        for service, anchor in (("queue-poller", root), ("translator", consume_t), ("scim-dispatcher", consume_d)):
            linked_from = [b for b in audit_publishes if b.service == service
                           and any(ln.trace_id == tr.trace_id for ln in b.links)]
            assert linked_from, f"no audit batch of {service} links to this event's trace\n{tr.dump()}"
        assert not tr.where(service="audit-recorder"), "audit-recorder work inside an event's trace"

    # -- no trace mixes two users -----------------------------------------------------------------------------
    users_in_trace: dict[str, set] = defaultdict(set)
    for s in spans:
        if USER_ID in s.attributes:
            users_in_trace[s.trace_id].add(s.attributes[USER_ID])
    mixed = {t: u for t, u in users_in_trace.items() if len(u) > 1}
    assert not mixed, f"traces with several users: {mixed}"
    for uid, tr in traces.items():
        assert users_in_trace[tr.trace_id] == {uid}

    # -- no user name or email anywhere in the run's spans (also URL-encoded, as in a SCIM filter) ---------------
    secrets = {form.lower() for login in logins for form in (login, quote(login, safe=""), quote_plus(login))}
    secrets |= {stack.token.lower(), stack.target_token.lower()}  # and no API token or bearer token either
    leaks = []
    for s in spans:
        texts = [s.name, *_strings(s.attributes)]
        for event in s.events:
            texts += [event.name, *_strings(event.attributes)]
        for text in texts:
            if any(secret in text.lower() for secret in secrets):
                leaks.append((s.service, s.name, text))
    assert not leaks, f"user names / emails / tokens in spans: {leaks[:10]}"

    # -- the audit trail names the event's trace ----------------------------------------------------------------
    async with httpx.AsyncClient(timeout=10) as http:
        for uid, root in roots.items():
            items = (await http.get(f"{stack.audit_url}/audit", params={"user": uid},
                                    headers=stack.audit_headers)).json()["items"]
            by_step = {r["step"]: r for r in items}
            for step in ("received", "planned", "applied"):
                assert by_step[step]["event_uuid"] == event_of[uid], items
                assert by_step[step]["trace_id"] == root.trace_id, \
                    f"{step} record of {uid} has trace {by_step[step]['trace_id']}, the event's is {root.trace_id}"
            assert {r["trace_id"] for r in items} == {root.trace_id}, items

    # -- the batched audit write is its own span, linked to the consume span of each message it wrote
    batches = [s for s in spans if s.name == "audit insert_many"]
    assert batches and all(b.parent_span_id is None for b in batches), "'audit insert_many' must be a root span"
    linked = {(ln.trace_id, ln.span_id) for b in batches for ln in b.links}
    consumed = [s for s in spans if s.service == "audit-recorder" and s.kind == "CONSUMER"]
    assert consumed and all((c.trace_id, c.span_id) in linked for c in consumed)


async def _settle_spans(rx: OtlpReceiver, uuids: set[str], timeout: float = 30.0) -> dict[str, list[SpanRecord]]:
    """Waits until every event's trace looks complete and no new span of those traces arrived for a second.

    Never asserts: if the traces stay incomplete, the assertions that follow say what is missing."""
    deadline, stable_since, last = time.monotonic() + timeout, None, -1
    roots: dict[str, list[SpanRecord]] = {}
    while time.monotonic() < deadline:
        spans = rx.spans()
        roots = defaultdict(list)
        for s in spans:
            if s.name == ROOT_NAME and s.attributes.get("okta.event.uuid") in uuids:
                roots[s.attributes["okta.event.uuid"]].append(s)
        trace_ids = {r.trace_id for rs in roots.values() for r in rs}
        in_traces = [s for s in spans if s.trace_id in trace_ids]
        per_trace: dict[str, list[SpanRecord]] = defaultdict(list)
        for s in in_traces:
            per_trace[s.trace_id].append(s)
        complete = roots.keys() == uuids and all(
            {s.service for s in per_trace[t]} >= SERVICES
            and any(s.name.startswith("SCIM POST") for s in per_trace[t]) for t in trace_ids)
        if complete and len(in_traces) == last:
            if stable_since is not None and time.monotonic() - stable_since >= 1.0:
                break
        else:
            stable_since, last = (time.monotonic(), len(in_traces)) if complete else (None, -1)
        await asyncio.sleep(0.2)
    return dict(roots)
