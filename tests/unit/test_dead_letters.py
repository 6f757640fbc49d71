"""Dead letters keep only what a replay needs (ids, type, version; the reason beside), malformed System Log events
without actor, client or request, and a replay plans again from Okta's current state."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

from okta_bridge.connectors import ConnectorsFile
from okta_bridge.contracts import (AppSyncRequested, AuditBatch, AuditRecorded, AuditStep, EventTarget, GroupAction,
                                   GroupPlanned, MappedAttribute, MembershipPlanned, OktaEventReceived, PlanAction,
                                   Reason, ScimOperationPlanned, SyncReason, TargetValuesObserved)
from okta_bridge.deadletters import DeadLetter, DeadLetterRecord, DeadLetters, Replay, _read, minimal, redact_event
from okta_bridge.topology import EVENTS_EXCHANGE, PLANS_EXCHANGE, SYNC_ROUTING_KEY
from tests.unit.fakes import ORG, membership_event

APP, USER, GROUP = "0oa1jiraxxxxxxxxxxxx", "00u1xxxxxxxxxxxxxxxx", "00g1b2c3d4e5f6g7h8i9"
PERSONAL = ("ann@acme.com", "Ann", "Example", "Sales", "203.0.113.7", "Berlin", "Mozilla")
CONNECTORS = ConnectorsFile.model_validate({"apps": [{"okta_app_id": APP, "name": "jira",
                                                     "base_url": "https://jira.lan/scim/v2/",
                                                     "auth": {"type": "none"}}]})


def user_plan() -> ScimOperationPlanned:
    attrs = {"userName": "ann@acme.com", "name.givenName": "Ann", "name.familyName": "Example",
             "department": "Sales"}
    return ScimOperationPlanned(org=ORG, app_id=APP, okta_user_id=USER, version=7, action=PlanAction.UPSERT,
                                attributes=tuple(MappedAttribute(path=k, value=v) for k, v in attrs.items()),
                                unique_value="ann@acme.com", cause="application.user_membership.add",
                                event_uuid="ev-1")


def letter(message, source: str = "scim-dispatcher") -> DeadLetter:
    body = (message if isinstance(message, bytes) else minimal(message).model_dump_json().encode())
    raw = SimpleNamespace(headers={"x-bridge-reason": "SCIM 400", "x-bridge-attempt": 3}, body=body,
                          routing_key=source)
    return _read(raw)  # type: ignore[arg-type]


def test_a_plan_is_kept_as_its_ids_type_and_version_only():
    record = minimal(user_plan())
    stored = record.model_dump_json()
    assert not any(value in stored for value in PERSONAL), stored
    assert (record.kind, record.app_id, record.okta_user_id, record.version, record.event_uuid) == (
        "ScimOperationPlanned", APP, USER, 7, "ev-1")
    observed = TargetValuesObserved(org=ORG, app_id=APP, okta_user_id=USER,
                                    values=(MappedAttribute(path="department", value="Sales"),))
    assert "Sales" not in minimal(observed).model_dump_json()
    event = OktaEventReceived(org=ORG, event_uuid="ev-2", event_type="application.user_membership.add",
                              published=datetime(2026, 1, 2, tzinfo=UTC),
                              targets=(EventTarget(id="0ua9xxxxxxxxxxxxxxxx", type="AppUser", alternate_id="ann@acme.com",
                                                   display_name="Ann Example"),
                                       EventTarget(id=USER, type="User", alternate_id="ann@acme.com")))
    kept = minimal(event)
    assert "ann@acme.com" not in kept.model_dump_json() and kept.targets == (("AppUser", "0ua9xxxxxxxxxxxxxxxx"), ("User", USER))


def test_an_unreadable_body_keeps_its_ids_and_size_not_its_content():
    body = json.dumps({"app_id": APP, "okta_user_id": USER, "version": 3, "unique_value": "ann@acme.com"}).encode()
    record = minimal(body)
    assert record.kind == "unreadable" and record.size == len(body) and record.version == 3
    assert (record.app_id, record.okta_user_id) == (APP, USER) and "ann@acme.com" not in record.model_dump_json()
    assert minimal(b"\x00garbage ann@acme.com").model_dump_json().count("ann@acme.com") == 0


def test_a_malformed_log_event_is_kept_without_actor_ip_or_location():
    raw = membership_event("ev-9")
    raw.update(actor={"id": "00uadminxxxxxxxxxxxx", "alternateId": "admin@acme.com", "displayName": "Ann Example"},
               client={"ipAddress": "203.0.113.7", "userAgent": {"rawUserAgent": "Mozilla/5.0"},
                       "geographicalContext": {"city": "Berlin", "country": "Germany"}},
               request={"ipChain": [{"ip": "203.0.113.7", "geographicalContext": {"city": "Berlin"}}]},
               securityContext={"isp": "Example ISP"}, displayMessage="Add user Ann to Sales")
    kept = json.dumps(redact_event(raw))
    for value in (*PERSONAL, "admin@acme.com", "Germany", "Example ISP"):
        assert value not in kept, value
    assert redact_event(raw)["uuid"] == "ev-9" and {"id": USER, "type": "User"} in redact_event(raw)["target"]
    assert redact_event("ann@acme.com") == {"malformed": "not a JSON object: str"}
    # and as the operator command reads it back
    shown = letter(json.dumps(redact_event(raw)).encode(), "queue-poller.malformed")
    assert shown.kind == "unreadable" and shown.message["uuid"] == "ev-9"
    assert "malformed Okta event" in shown.replay(CONNECTORS, ORG)  # cannot be replayed: inspect and drop


def test_a_message_the_broker_dead_lettered_whole_is_shown_as_its_record():
    shown = letter(user_plan().model_dump_json().encode(), "translator.work")
    assert isinstance(shown.message, DeadLetterRecord) and shown.kind == "ScimOperationPlanned"
    assert "ann@acme.com" not in shown.message.model_dump_json()


def test_a_user_plan_is_replayed_as_a_look_again_at_the_app_and_user_not_as_the_old_body():
    exchange, key, message = letter(user_plan()).replay(CONNECTORS, ORG)
    assert (exchange, key) == (EVENTS_EXCHANGE.name, "okta.event.application.user_membership.update")
    assert isinstance(message, OktaEventReceived) and message.event_uuid.startswith("replay-")
    assert {(t.type, t.id) for t in message.targets} == {("User", USER), ("AppInstance", APP)}
    assert "ann@acme.com" not in message.model_dump_json()


def test_group_membership_sync_and_audit_replays():
    push = GroupPlanned(org=ORG, app_id=APP, okta_group_id=GROUP, version=4, action=GroupAction.PUSH,
                        display_name="Sales", cause="group.profile.update")
    exchange, key, sync = letter(push).replay(CONNECTORS, ORG)
    assert (exchange, key) == (EVENTS_EXCHANGE.name, SYNC_ROUTING_KEY)
    assert isinstance(sync, AppSyncRequested) and sync.scope == "groups" and sync.reason is SyncReason.OPERATOR
    delete = push.model_copy(update={"action": GroupAction.DELETE})
    assert "delete command" in letter(delete).replay(CONNECTORS, ORG)
    members = MembershipPlanned(org=ORG, app_id=APP, okta_group_id=GROUP, okta_user_ids=(USER, "00u2xxxxxxxxxxxxxxxx"), cause="x")
    exchange, key, plan = letter(members).replay(CONNECTORS, ORG)
    assert exchange == PLANS_EXCHANGE.name and key.startswith("default.")
    assert isinstance(plan, MembershipPlanned) and plan.okta_user_ids == (USER, "00u2xxxxxxxxxxxxxxxx")
    batch = AuditBatch(records=(AuditRecorded(at=datetime.now(UTC), service="t", step=AuditStep.APPLIED, org=ORG,
                                              reason=Reason.APPLIED),))
    assert letter(batch, "audit-recorder").replay(CONNECTORS, ORG).message == batch
    assert "not a bridge message" in letter(b"not json").replay(CONNECTORS, ORG)
    other = ConnectorsFile.model_validate({"apps": []})
    assert "not in the connectors file" in letter(user_plan()).replay(other, ORG)


def test_a_replay_is_a_named_record_not_a_positional_tuple():
    replay = letter(user_plan()).replay(CONNECTORS, ORG)
    assert isinstance(replay, Replay)
    assert replay.exchange == EVENTS_EXCHANGE.name
    assert replay.routing_key == "okta.event.application.user_membership.update"
    assert isinstance(replay.message, OktaEventReceived)


def test_an_audit_batch_of_an_earlier_release_without_reason_codes_is_still_read_and_replayed():
    legacy = json.dumps({"records": [{"at": datetime.now(UTC).isoformat(), "service": "translator",
                                      "step": "planned", "org": ORG, "okta_group_id": GROUP}]}).encode()
    shown = letter(legacy, "audit-recorder")
    assert isinstance(shown.message, AuditBatch) and shown.message.records[0].reason is None
    replay = shown.replay(CONNECTORS, ORG)
    assert isinstance(replay, Replay) and replay.message == shown.message


class _Exchange:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def publish(self, message, routing_key: str) -> None:
        self.bodies.append(message.body)


async def test_a_replay_and_a_drop_are_audited_with_the_operator_reason_code():
    exchange = _Exchange()

    async def get_exchange(name):
        return exchange

    channel = SimpleNamespace(get_exchange=get_exchange)
    letters = DeadLetters("amqp://unused", ORG, "ops@acme.com")
    dead = letter(MembershipPlanned(org=ORG, app_id=APP, okta_group_id=GROUP, okta_user_ids=(USER,), cause="x"))
    await letters._audit(channel, dead, AuditStep.REPLAYED, Reason.OPERATOR, "replayed by ops@acme.com")
    await letters._audit(channel, dead, AuditStep.SKIPPED, Reason.OPERATOR, "dead letter dropped by ops@acme.com")
    records = [AuditBatch.model_validate_json(b).records[0] for b in exchange.bodies]
    assert [(r.step, r.reason) for r in records] == [(AuditStep.REPLAYED, Reason.OPERATOR),
                                                     (AuditStep.SKIPPED, Reason.OPERATOR)]
    assert records[0].okta_group_id == GROUP and records[0].actor == "ops@acme.com"
