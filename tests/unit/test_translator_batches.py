"""The translator's batches: one plan per key, batched Okta reads trusted only when not older than an earlier plan's,
absent ids confirmed by id, poison messages alone dead-lettered, every message keeping its own audit record."""

from __future__ import annotations

import json as _json

import httpx
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

from okta_bridge.bus import Delivery
from okta_bridge.contracts import AuditStep, MappedAttribute, PlanAction, Reason, TargetValuesObserved
from okta_bridge.events import parse_event
from okta_bridge.okta_client import OktaClient
from tests.unit.fakes import (ORG, FakeAssignments, FakeAudit, FakeOkta, FakePlanOutbox, FakeRaw, app_connector,
                              membership_event, okta_user, user_event)
from translator.consume import TranslatorIntake
from translator.handlers import Translator
from translator.planning import Planner, Source

JIRA, WIKI = "0oa1jiraxxxxxxxxxxxx", "0oa2wikixxxxxxxxxxxx"
OLD, NEW = "2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"


def make(users=None) -> Translator:
    apps = {JIRA: app_connector(JIRA, "jira", attribute_mappings={"title": "profile.title"}),
            WIKI: app_connector(WIKI, "wiki")}
    return Translator(ORG, apps, Planner(ORG, apps, FakeAssignments(), FakeOkta(users)), FakePlanOutbox(), FakeAudit())


def sources(*raws):
    out = []
    for i, raw in enumerate(raws):
        e = parse_event(ORG, raw)
        out.append((Source(i, e.event_type, e.event_uuid, None), e))
    return out


def titles(t: Translator, user: str):
    return [(p.version, {a.path: a.value for a in p.attributes}.get("title")) for p, _ in t.outbox.plans
            if p.okta_user_id == user]


async def test_several_events_of_one_key_make_one_plan_and_each_keeps_its_audit_record():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx", title="1")})
    results = await t.handle_events(sources(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx", username="ann"),
                                            user_event("e2", user_id="00u1xxxxxxxxxxxxxxxx"),
                                            membership_event("e3", "update", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert all(r.failure is None for r in results.values())
    [(plan, _)] = t.outbox.plans
    assert (plan.version, plan.action, plan.event_uuid) == (1, PlanAction.UPSERT, "e1")
    planned = [f for s, f in t.audit.records if s is AuditStep.PLANNED]
    assert sorted(f["event_uuid"] for f in planned) == ["e1", "e2", "e3"]
    assert {f["plan_version"] for f in planned} == {1} and {f["reason"] for f in planned} == {Reason.PLANNED}
    assert t.okta.get_user_calls == ["00u1xxxxxxxxxxxxxxxx"]  # a user event among them: read by id
    assert t.okta.listing_reads == []


async def test_membership_events_of_many_users_read_okta_in_one_batched_read():
    users = {f"00u{i:x<17}": okta_user(f"00u{i:x<17}") for i in range(50)}
    t = make(users)
    await t.handle_events(sources(*(membership_event(f"e{i}", user_id=f"00u{i:x<17}") for i in range(50))))
    assert len(t.outbox.plans) == 50
    assert t.okta.get_user_calls == [] and len(t.okta.listing_reads) == 1 and len(t.okta.listing_reads[0]) == 50


async def test_a_batched_answer_older_than_what_an_earlier_plan_used_is_read_again_by_id():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx", title="1", updated=OLD)})
    await t.handle_events(sources(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    t.okta.users["00u1xxxxxxxxxxxxxxxx"] = okta_user("00u1xxxxxxxxxxxxxxxx", title="2", updated=NEW)
    await t.handle_events(sources(user_event("e2", user_id="00u1xxxxxxxxxxxxxxxx")))  # by id: title 2, lastUpdated NEW recorded
    t.okta.stale["00u1xxxxxxxxxxxxxxxx"] = okta_user("00u1xxxxxxxxxxxxxxxx", title="1", updated=OLD)  # the listing lags behind
    await t.handle_events(sources(membership_event("e3", "update", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert titles(t, "00u1xxxxxxxxxxxxxxxx") == [(1, "1"), (2, "2"), (3, "2")]
    assert t.okta.get_user_calls == ["00u1xxxxxxxxxxxxxxxx", "00u1xxxxxxxxxxxxxxxx"]  # the user event's, then the confirmation of the stale answer


async def test_a_batched_answer_older_than_what_a_plan_for_another_app_used_is_read_again_by_id():
    """The floor is the user's, over every app: a profile change went out to one app (read by id), then the user is
    assigned to a second app whose row is new; a listing that lags behind the change must not plan that app."""
    u = "00u1xxxxxxxxxxxxxxxx"
    t = make({u: okta_user(u, title="1", updated=OLD)})
    await t.handle_events(sources(membership_event("e1", app_id=WIKI, user_id=u)))
    t.okta.users[u] = okta_user(u, title="2", updated=NEW)
    await t.handle_events(sources(user_event("e2", user_id=u)))  # WIKI's plan built from NEW, read by id
    t.okta.stale[u] = okta_user(u, title="1", updated=OLD)  # the listing lags behind
    t.okta.get_user_calls.clear()
    await t.handle_events(sources(membership_event("e3", app_id=JIRA, user_id=u)))
    jira = [{a.path: a.value for a in p.attributes}.get("title") for p, _ in t.outbox.plans if p.app_id == JIRA]
    assert jira == ["2"] and t.okta.get_user_calls == [u]  # the stale answer confirmed by id, the new title sent


async def test_a_batched_answer_as_new_as_the_last_plans_read_is_trusted():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx", title="1", updated=OLD)})
    await t.handle_events(sources(user_event("e0", user_id="00u1xxxxxxxxxxxxxxxx")))  # no row yet: nothing planned, nothing read
    await t.handle_events(sources(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    await t.handle_events(sources(membership_event("e2", "update", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert titles(t, "00u1xxxxxxxxxxxxxxxx") == [(1, "1"), (2, "1")] and t.okta.get_user_calls == []


async def test_an_id_the_batched_answer_leaves_out_is_confirmed_by_id_before_anything_is_deactivated():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx"), "00u2xxxxxxxxxxxxxxxx": okta_user("00u2xxxxxxxxxxxxxxxx")})
    t.okta.left_out = {"00u1xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx"}
    del t.okta.users["00u2xxxxxxxxxxxxxxxx"]  # 00u2xxxxxxxxxxxxxxxx is gone for real: 404 by id
    await t.handle_events(sources(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx"), membership_event("e2", user_id="00u2xxxxxxxxxxxxxxxx")))
    actions = {p.okta_user_id: p.action for p, _ in t.outbox.plans}
    assert actions == {"00u1xxxxxxxxxxxxxxxx": PlanAction.UPSERT, "00u2xxxxxxxxxxxxxxxx": PlanAction.DEACTIVATE}
    assert sorted(t.okta.get_user_calls) == ["00u1xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx"]


async def test_a_plan_overtaken_by_one_built_from_older_data_goes_out_after_it_with_its_newer_data():
    """Two batches of one key: A reads by id (new data) and is overtaken by B, which trusted an older batched answer
    and committed first. A's row changed: A reads it again and, its data being at least as new, goes out next."""
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx", title="1", updated=OLD)})
    await t.handle_events(sources(membership_event("e0", user_id="00u1xxxxxxxxxxxxxxxx")))
    t.outbox.plans.clear()
    t.okta.users["00u1xxxxxxxxxxxxxxxx"] = okta_user("00u1xxxxxxxxxxxxxxxx", title="2", updated=NEW)
    t.okta.stale["00u1xxxxxxxxxxxxxxxx"] = okta_user("00u1xxxxxxxxxxxxxxxx", title="1", updated=OLD)

    async def b_overtakes(_user_id):
        await t.handle_events(sources(membership_event("eB", "update", user_id="00u1xxxxxxxxxxxxxxxx")))

    t.okta.on_get_user = b_overtakes
    results = await t.handle_events(sources(user_event("eA", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert titles(t, "00u1xxxxxxxxxxxxxxxx") == [(2, "1"), (3, "2")]  # B went out with the older title, A after it
    assert all(r.failure is None for r in results.values())


async def test_a_user_event_reads_by_id_even_when_a_batched_answer_would_do():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx"), "00u2xxxxxxxxxxxxxxxx": okta_user("00u2xxxxxxxxxxxxxxxx")})
    await t.handle_events(sources(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx"), membership_event("e2", user_id="00u2xxxxxxxxxxxxxxxx")))
    t.okta.listing_reads.clear()
    await t.handle_events(sources(user_event("u1", user_id="00u1xxxxxxxxxxxxxxxx"), membership_event("e3", "update",
                                                                                       user_id="00u2xxxxxxxxxxxxxxxx")))
    assert t.okta.get_user_calls == ["00u1xxxxxxxxxxxxxxxx"] and t.okta.listing_reads == [["00u2xxxxxxxxxxxxxxxx"]]


# ------------------------------------------------------------------ the intake: deliveries in, acks out

class FakeRepublisher:
    max_attempts = 10

    def __init__(self) -> None:
        self.dead: list[tuple[object, str]] = []
        self.retried: list[object] = []

    async def retry(self, message, attempt, retry_after_s=None, routing_key=""):
        self.retried.append(message)

    async def hold(self, message, attempt, routing_key=""):
        raise AssertionError("the translator never holds")

    async def dead_letter(self, message, reason, attempt, source):
        self.dead.append((message, reason))


class GatheringAudit(FakeAudit):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def batch(self):
        self.batches = getattr(self, "batches", 0) + 1
        yield


def delivery(body: bytes) -> Delivery:
    span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    return Delivery(FakeRaw(body), "translator.work", 1, otel_context.Context(), span)


async def test_a_poison_message_in_a_batch_is_dead_lettered_alone_and_the_others_are_planned():
    t = make({f"00u{i:x<17}": okta_user(f"00u{i:x<17}") for i in range(3)})
    t.audit = GatheringAudit()
    republisher = FakeRepublisher()
    intake = TranslatorIntake(t, republisher, t.audit, batch_size=10, batch_wait_s=0.01)
    events = [delivery(parse_event(ORG, membership_event(f"e{i}", user_id=f"00u{i:x<17}")).model_dump_json().encode())
              for i in range(3)]
    poison = delivery(b'{"schema_version": 1, "not": "a contract"}')
    for d in [events[0], poison, events[1], events[2]]:
        intake.on_delivery(d)
    await intake.close()
    assert len(t.outbox.plans) == 3
    assert [r for r in republisher.dead] and republisher.dead[0][1].startswith("translator: invalid message")
    assert all(d.raw.acked for d in [*events, poison])
    dead = [f for s, f in t.audit.records if s is AuditStep.DEAD_LETTERED]
    assert len(dead) == 1 and dead[0]["reason"] is Reason.INVALID_MESSAGE


async def test_a_key_the_database_refuses_alone_is_retried_alone_and_the_others_are_planned():
    t = make({f"00u{i:x<17}": okta_user(f"00u{i:x<17}") for i in range(3)})
    t.audit = GatheringAudit()
    t.planner.store.refuse.add((JIRA, "00u1xxxxxxxxxxxxxxxx"))
    republisher = FakeRepublisher()
    intake = TranslatorIntake(t, republisher, t.audit, batch_size=10, batch_wait_s=0.01)
    events = [delivery(parse_event(ORG, membership_event(f"e{i}", user_id=f"00u{i:x<17}")).model_dump_json().encode())
              for i in range(3)]
    for d in events:
        intake.on_delivery(d)
    await intake.close()
    assert sorted(p.okta_user_id for p, _ in t.outbox.plans) == ["00u0xxxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx"]
    assert len(republisher.retried) == 1 and not republisher.dead
    assert "00u1xxxxxxxxxxxxxxxx" in republisher.retried[0].model_dump_json()  # that key's message alone
    assert all(d.raw.acked for d in events)
    failed = [f for s, f in t.audit.records if s is AuditStep.RETRIED]
    assert [(f["okta_user_id"], f["reason"]) for f in failed] == [("00u1xxxxxxxxxxxxxxxx", Reason.INTERNAL)]


async def test_a_forged_write_back_whose_user_id_is_a_path_is_dead_lettered_as_invalid_and_never_sent():
    """Issue 9 item 13: ``okta_user_id="../../../users/00u…"`` would have made the translator POST to another
    user's profile with the API token; the contract refuses it, and the reason names the field, not the values."""
    t = make()
    t.audit = GatheringAudit()
    republisher = FakeRepublisher()
    intake = TranslatorIntake(t, republisher, t.audit, batch_size=10, batch_wait_s=0.01)
    forged = delivery(TargetValuesObserved.model_construct(
        schema_version=1, org=ORG, app_id=JIRA, okta_user_id="../../../users/00u2xxxxxxxxxxxxxxxx",
        values=(MappedAttribute(path="email", value="ann@acme.com"),), event_uuid=None).model_dump_json().encode())
    intake.on_delivery(forged)
    await intake.close()
    ((_, why, *_),) = republisher.dead
    assert why.startswith("translator: invalid message") and "okta_user_id: not an Okta id" in why
    assert "../" not in why and "ann@acme.com" not in why
    assert forged.raw.acked and t.outbox.plans == []


async def test_a_failing_key_retries_its_own_message_and_the_others_are_acked_planned():
    t = make({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx"), "00u2xxxxxxxxxxxxxxxx": okta_user("00u2xxxxxxxxxxxxxxxx")})
    t.audit = GatheringAudit()
    republisher = FakeRepublisher()
    intake = TranslatorIntake(t, republisher, t.audit, batch_size=10, batch_wait_s=0.01)
    t.okta.users["00u2xxxxxxxxxxxxxxxx"] = {"id": "00u2xxxxxxxxxxxxxxxx"}  # an answer without a status: never read as "gone"
    t.okta.left_out = {"00u2xxxxxxxxxxxxxxxx"}
    deliveries = [delivery(parse_event(ORG, membership_event(f"e{i}", user_id=f"00u{i:x<17}")).model_dump_json().encode())
                  for i in (1, 2)]
    for d in deliveries:
        intake.on_delivery(d)
    await intake.close()
    assert [p.okta_user_id for p, _ in t.outbox.plans] == ["00u1xxxxxxxxxxxxxxxx"]
    assert [m.event_uuid for m in republisher.retried] == ["e2"]
    assert all(d.raw.acked for d in deliveries)
    retried = [f for s, f in t.audit.records if s is AuditStep.RETRIED]
    assert [f["event_uuid"] for f in retried] == ["e2"]


# ------------------------------------------------------------------ a bad answer from Okta never deactivates anyone


def _okta_answering(by_id: httpx.Response) -> OktaClient:
    """The real client over a mock transport: the batched listing answers the user well, a read by id as given."""
    good = okta_user("00u1xxxxxxxxxxxxxxxx")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/users":
            return httpx.Response(200, json=[good])
        return by_id

    return OktaClient(ORG, "t0ken", http=httpx.AsyncClient(transport=httpx.MockTransport(answer)))


@pytest.mark.parametrize(("answer", "why"), [
    (httpx.Response(200, content=b""), "is empty, not a user"),
    (httpx.Response(200, json={"id": "00u1xxxxxxxxxxxxxxxx", "profile": {"email": "ann@acme.com"}}), "has no status"),
    (httpx.Response(200, json={**okta_user("00u1xxxxxxxxxxxxxxxx"), "status": "ACTIVATING"}), "status ACTIVATING, not one Okta"),
    (httpx.Response(200, json={**okta_user("00u1xxxxxxxxxxxxxxxx"), "status": "ann@acme.com"}), "status unreadable"),
    (httpx.Response(200, json=[okta_user("00u1xxxxxxxxxxxxxxxx")]), "is a JSON list, not a user"),
    (httpx.Response(200, json={**okta_user("00u2xxxxxxxxxxxxxxxx")}), "without that id"),
])
async def test_a_bad_answer_by_id_is_retried_with_what_was_wrong_and_deactivates_no_one(answer, why):
    apps = {JIRA: app_connector(JIRA, "jira")}
    t = Translator(ORG, apps, Planner(ORG, apps, FakeAssignments(), _okta_answering(answer)), FakePlanOutbox(),
                   GatheringAudit())
    await t.handle_events(sources(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))  # assigned, planned from the listing
    assert [p.action for p, _ in t.outbox.plans] == [PlanAction.UPSERT]
    republisher = FakeRepublisher()
    intake = TranslatorIntake(t, republisher, t.audit, batch_size=10, batch_wait_s=0.01)
    d = delivery(parse_event(ORG, user_event("e2", "lifecycle.deactivate", user_id="00u1xxxxxxxxxxxxxxxx")).model_dump_json().encode())
    intake.on_delivery(d)
    await intake.close()
    assert [p.action for p, _ in t.outbox.plans] == [PlanAction.UPSERT], "nothing deactivated on a bad answer"
    assert [m.event_uuid for m in republisher.retried] == ["e2"] and d.raw.acked
    [retried] = [f for s, f in t.audit.records if s is AuditStep.RETRIED]
    assert retried["reason"] is Reason.OKTA_TRANSIENT and why in retried["detail"]
    assert "ann@acme.com" not in _json.dumps(t.audit.records, default=str)


async def test_only_a_404_by_id_means_the_user_is_gone():
    apps = {JIRA: app_connector(JIRA, "jira")}
    gone = httpx.Response(404, json={"errorCode": "E0000007", "errorSummary": "Not found: Resource not found: 00u1"})
    t = Translator(ORG, apps, Planner(ORG, apps, FakeAssignments(), _okta_answering(gone)), FakePlanOutbox(),
                   FakeAudit())
    await t.handle_events(sources(membership_event("e1", user_id="00u1xxxxxxxxxxxxxxxx")))
    results = await t.handle_events(sources(user_event("e2", "lifecycle.delete.initiated", user_id="00u1xxxxxxxxxxxxxxxx")))
    assert [p.action for p, _ in t.outbox.plans] == [PlanAction.UPSERT, PlanAction.DEACTIVATE]
    assert all(r.failure is None for r in results.values())


async def test_a_sync_whose_listing_page_is_an_object_unassigns_no_one():
    """Read as an empty listing, ``{}`` would have made every assigned user "no longer assigned": deactivated."""
    from okta_bridge.contracts import AppSyncRequested, SyncReason
    from okta_bridge.okta_client import OktaBadAnswerError

    listing = [[{"id": "00u1xxxxxxxxxxxxxxxx", "credentials": {"userName": "ann"}, "_embedded": {"user": okta_user("00u1xxxxxxxxxxxxxxxx")}}]]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/users"):  # the user, read well
            return httpx.Response(200, json=okta_user("00u1xxxxxxxxxxxxxxxx") if request.url.path.endswith("00u1xxxxxxxxxxxxxxxx")
                                  else [okta_user("00u1xxxxxxxxxxxxxxxx")])
        return httpx.Response(200, json=listing[0])

    apps = {JIRA: app_connector(JIRA, "jira")}
    okta = OktaClient(ORG, "t0ken", http=httpx.AsyncClient(transport=httpx.MockTransport(answer)))
    t = Translator(ORG, apps, Planner(ORG, apps, FakeAssignments(), okta), FakePlanOutbox(), FakeAudit())
    await t.handle_sync(AppSyncRequested(org=ORG, app_id=JIRA, reason=SyncReason.INITIAL, sync_id="s1"))
    assert [p.action for p, _ in t.outbox.plans] == [PlanAction.UPSERT]
    listing[0] = {}
    with pytest.raises(OktaBadAnswerError, match="the page is a JSON object, not a list"):
        await t.handle_sync(AppSyncRequested(org=ORG, app_id=JIRA, reason=SyncReason.OPERATOR, sync_id="s2"))
    assert [p.action for p, _ in t.outbox.plans] == [PlanAction.UPSERT], "no one deactivated"


class _ConfirmingOutbox(FakePlanOutbox):
    """Each publish waits for its broker confirm; counts how many waited at once. ``fail``: the user whose plan the
    broker refuses."""

    def __init__(self, fail: str | None = None) -> None:
        super().__init__()
        self.waiting = self.most_waiting = 0
        self.fail = fail

    async def publish(self, plan, pool: str, context=None) -> None:
        import asyncio

        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        await asyncio.sleep(0.001)  # the confirm
        self.waiting -= 1
        if plan.okta_user_id == self.fail:
            raise ConnectionError("channel closed")
        await super().publish(plan, pool, context)


async def test_a_batchs_plans_await_their_confirms_together_and_a_refused_one_fails_the_batch_after_all_were_tried():
    users = {f"00u{i:x<17}": okta_user(f"00u{i:x<17}") for i in range(150)}
    t = make(users)
    t.outbox = _ConfirmingOutbox()
    results = await t.handle_events(sources(*(membership_event(f"e{i}", user_id=f"00u{i:x<17}") for i in range(150))))
    assert all(r.failure is None for r in results.values()) and len(t.outbox.plans) == 150
    assert t.outbox.most_waiting == 100  # a window of 100 at once, not one after the other
    t = make(users)
    t.outbox = _ConfirmingOutbox(fail="00u7xxxxxxxxxxxxxxxx")
    with pytest.raises(ConnectionError):
        await t.handle_events(sources(*(membership_event(f"f{i}", user_id=f"00u{i:x<17}") for i in range(10))))
    assert len(t.outbox.plans) == 9  # the others went out; the batch is tried again (level-triggered, versioned)
