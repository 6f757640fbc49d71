"""Message contracts: frozen, ``extra="forbid"``, versioned, and lossless through JSON (docs/style.md habit 1)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from okta_bridge import contracts
from okta_bridge.contracts import (AppSyncRequested, AuditRecorded, AuditStep, EventTarget, GroupAction, GroupPlanned,
                                   MappedAttribute, MembershipPlanned, OktaEventReceived, PlanAction, Reason,
                                   ScimOperationPlanned, SyncReason, TargetValuesObserved)
from okta_bridge.events import MalformedEvent, parse_event
from okta_simulator.ids import okta_id
from tests.unit.fakes import ORG, membership_event

NOW = datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)

SAMPLES: list[BaseModel] = [
    OktaEventReceived(org=ORG, event_uuid="e1", event_type="application.user_membership.add", published=NOW,
                      transaction_id="tx", request_api_token_id="00T1",
                      targets=(EventTarget(id="00u1xxxxxxxxxxxxxxxx", type="User", alternate_id="ann@acme.com"),
                               EventTarget(id="0oa1xxxxxxxxxxxxxxxx", type="AppInstance"))),
    AppSyncRequested(org=ORG, app_id="0oa1xxxxxxxxxxxxxxxx", reason=SyncReason.CURSOR_EXPIRED, sync_id="s1"),
    ScimOperationPlanned(org=ORG, app_id="0oa1xxxxxxxxxxxxxxxx", okta_user_id="00u1xxxxxxxxxxxxxxxx", version=7, action=PlanAction.UPSERT,
                         attributes=(MappedAttribute(path="userName", value="ann@acme.com"),
                                     MappedAttribute(path="emails", value=[{"value": "a@b.c", "type": "work",
                                                                            "primary": True}]),
                                     MappedAttribute(path="urn:okta:jira:1.0:user:department", value="Eng")),
                         unique_value="ann@acme.com", cause="application.user_membership.add", event_uuid="e1"),
    AuditRecorded(at=NOW, service="translator", step=AuditStep.PLANNED, org=ORG, event_uuid="e1", app_id="0oa1xxxxxxxxxxxxxxxx",
                  okta_user_id="00u1xxxxxxxxxxxxxxxx", plan_version=7, scim_path="/Users?filter=<redacted>", duration_ms=1.5,
                  reason=Reason.PLANNED),
]
IDS = [type(s).__name__ for s in SAMPLES]


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_json_round_trip_is_lossless(sample):
    again = type(sample).model_validate_json(sample.model_dump_json())
    assert again == sample
    assert again.model_dump_json() == sample.model_dump_json()


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_contracts_are_frozen(sample):
    field = next(iter(type(sample).model_fields))
    with pytest.raises(ValidationError):
        setattr(sample, field, getattr(sample, field))


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_unknown_fields_are_rejected(sample):
    data = sample.model_dump(mode="json") | {"surprise": 1}
    with pytest.raises(ValidationError, match="surprise"):
        type(sample).model_validate(data)


@pytest.mark.parametrize("sample", SAMPLES, ids=IDS)
def test_schema_version_is_1_and_pinned(sample):
    assert sample.schema_version == 1
    with pytest.raises(ValidationError):
        type(sample).model_validate(sample.model_dump(mode="json") | {"schema_version": 2})


def test_nested_targets_and_attributes_are_strict_too():
    with pytest.raises(ValidationError):
        EventTarget(id="00u1xxxxxxxxxxxxxxxx", type="User", extra="x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        MappedAttribute(path="x", value=object())  # not JSON


def test_enums_travel_as_their_values():
    data = SAMPLES[2].model_dump(mode="json")
    assert data["action"] == "upsert"
    assert SAMPLES[1].model_dump(mode="json")["reason"] == "cursor_expired"
    with pytest.raises(ValidationError):
        ScimOperationPlanned.model_validate(data | {"action": "delete"})


def test_every_exported_name_exists():
    for name in contracts.__all__:
        assert hasattr(contracts, name)


def test_a_parsed_log_event_round_trips():
    event = parse_event(ORG, membership_event("e1", token_id="00Tbridge"))
    assert event.request_api_token_id == "00Tbridge"
    assert {t.type for t in event.targets} == {"AppUser", "AppInstance", "User"}
    assert OktaEventReceived.model_validate_json(event.model_dump_json()) == event


def test_handled_event_types_are_one_list_of_everything_the_bridge_acts_on():
    """The poller's System Log filter is built from HANDLED_EVENT_TYPES: a type handled but not listed would never
    be asked for."""
    from okta_bridge.events import (APP_USER_EVENTS, GROUP_EVENTS, HANDLED_EVENT_TYPES, MEMBERSHIP_EVENTS,
                                    USER_EVENTS)
    assert set(HANDLED_EVENT_TYPES) == APP_USER_EVENTS | USER_EVENTS | GROUP_EVENTS
    assert list(HANDLED_EVENT_TYPES) == sorted(set(HANDLED_EVENT_TYPES))
    assert {"application.user_membership.restore", "user.account.update_primary_email",
            "directory.app_user_profile.update"} <= set(HANDLED_EVENT_TYPES)
    assert MEMBERSHIP_EVENTS <= APP_USER_EVENTS


# --- Okta ids (issue 9, item 13) ------------------------------------------------------------------------------------

FORGED = ["../../../users/00u1xxxxxxxxxxxxxxxx", "00u1", "00u1xxxxxxxxxxxxxxxx/", "00u1xxxxxxxxxxxxxxx%", "",
          "00u1xxxxxxxxxxxxxxxxx", "00u1xxxxxxxxxxxxxxx\n", "00u1xxxxxx?x=1xxxxxx"]


@pytest.mark.parametrize("bad", FORGED)
@pytest.mark.parametrize("field", ["app_id", "okta_user_id"])
def test_a_plan_whose_id_is_not_oktas_20_character_form_is_refused_without_quoting_it(field, bad):
    data = SAMPLES[2].model_dump(mode="json") | {field: bad}
    with pytest.raises(ValidationError) as caught:
        ScimOperationPlanned.model_validate_json(json.dumps(data))
    assert "not an Okta id" in str(caught.value)
    assert "ann@acme.com" not in str(caught.value)  # the refused message's values are never quoted
    if len(bad) > 4:
        assert bad not in str(caught.value)


@pytest.mark.parametrize("bad", FORGED[:3])
def test_every_message_refuses_a_forged_id(bad):
    with pytest.raises(ValidationError):
        AppSyncRequested(org=ORG, app_id=bad, reason=SyncReason.OPERATOR, sync_id="s")
    with pytest.raises(ValidationError):
        TargetValuesObserved(org=ORG, app_id=okta_id("0oa"), okta_user_id=bad, values=())
    with pytest.raises(ValidationError):
        GroupPlanned(org=ORG, app_id=okta_id("0oa"), okta_group_id=bad, version=1, action=GroupAction.PUSH, cause="c")
    with pytest.raises(ValidationError):
        MembershipPlanned(org=ORG, app_id=okta_id("0oa"), okta_group_id=okta_id("00g"),
                          okta_user_ids=(okta_id("00u"), bad), cause="c")
    with pytest.raises(ValidationError):
        EventTarget(id=bad, type="User")


def test_an_event_whose_user_target_is_a_path_is_malformed():
    raw = membership_event("e1", user_id="../../users/00u2xxxxxxxxxxxxxxxx")
    with pytest.raises(MalformedEvent):
        parse_event(ORG, raw)


def test_event_targets_of_other_types_keep_their_ids_and_the_simulators_ids_pass():
    assert EventTarget(id="some-policy/rule", type="PolicyRule").id == "some-policy/rule"
    for prefix in ("00u", "0oa", "00g", "0ua"):
        assert EventTarget(id=okta_id(prefix), type="User").id.startswith(prefix)
    assert all(re.fullmatch(contracts.OKTA_ID_PATTERN, okta_id("00u")) for _ in range(200))


def test_every_audit_record_the_bridge_makes_has_a_reason_code_and_one_of_an_earlier_release_is_still_read():
    fields = dict(at=NOW, service="translator", step=AuditStep.PLANNED, org=ORG)
    with pytest.raises(ValidationError, match="needs a reason code"):
        AuditRecorded(**fields)
    with pytest.raises(ValidationError, match="needs a reason code"):
        AuditRecorded(**fields, reason=None)
    with pytest.raises(ValidationError, match="needs a reason code"):
        AuditRecorded.model_validate(fields)
    assert AuditRecorded(**fields, reason=Reason.PLANNED).model_dump(mode="json")["reason"] == "planned"
    # an audit batch of an earlier release (kept whole in the dead letters, replayed to the recorder) has none
    legacy = json.dumps({"at": NOW.isoformat(), "service": "translator", "step": "planned", "org": ORG})
    assert AuditRecorded.model_validate_json(legacy).reason is None
    from okta_bridge.contracts import AuditBatch
    assert AuditBatch.model_validate_json(f'{{"records": [{legacy}]}}').records[0].reason is None
