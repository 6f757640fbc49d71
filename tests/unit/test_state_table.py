"""``decide``: the whole Okta status x assignment table (state_table.py docstring; brief section 3)."""

from __future__ import annotations

import pytest

from okta_bridge.contracts import PlanAction
from tests.unit.fakes import app_connector
from translator.state_table import decide

UPSERT, DEACTIVATE = PlanAction.UPSERT, PlanAction.DEACTIVATE
ALL_STATUSES = ["ACTIVE", "LOCKED_OUT", "PASSWORD_EXPIRED", "RECOVERY", "SUSPENDED", "STAGED", "PROVISIONED",
                "DEPROVISIONED", None]

DEFAULT = app_connector()
IGNORE_SUSPENDED = app_connector(suspended="ignore")
DEACTIVATE_SUSPENDED = app_connector(suspended="deactivate")
PUSH_PENDING = app_connector(actions={"push_pending_users": True})


@pytest.mark.parametrize(("status", "action"), [
    ("ACTIVE", UPSERT),
    ("LOCKED_OUT", UPSERT),  # sign-in states: Okta does not deprovision for them
    ("PASSWORD_EXPIRED", UPSERT),
    ("RECOVERY", UPSERT),
    ("SUSPENDED", None),  # suspended: ignore (the default): Okta's client sends no deprovisioning for it
    ("STAGED", None),  # pending users are not pushed by default
    ("PROVISIONED", None),
    ("DEPROVISIONED", DEACTIVATE),
    (None, DEACTIVATE),  # deleted in Okta (404)
])
def test_assigned_with_default_connector(status, action):
    assert decide(status, True, DEFAULT).action is action


@pytest.mark.parametrize("status", ALL_STATUSES)
@pytest.mark.parametrize("app", [DEFAULT, IGNORE_SUSPENDED, DEACTIVATE_SUSPENDED, PUSH_PENDING],
                         ids=["default", "ignore", "deactivate", "pending"])
def test_not_assigned_is_always_deactivate(status, app):
    assert decide(status, False, app).action is DEACTIVATE


def test_suspended_ignore_sends_nothing():
    decision = decide("SUSPENDED", True, IGNORE_SUSPENDED)
    assert decision.action is None
    assert "ignore" in decision.reason


def test_suspended_ignore_is_the_default():
    """Okta's SCIM 1.1 and 2.0 pages: no deprovisioning is sent for a suspended user."""
    assert DEFAULT.suspended == "ignore"
    assert decide("SUSPENDED", True, DEFAULT) == decide("SUSPENDED", True, IGNORE_SUSPENDED)


def test_suspended_deactivate_stays_an_option():
    decision = decide("SUSPENDED", True, DEACTIVATE_SUSPENDED)
    assert decision.action is DEACTIVATE
    assert "deactivate" in decision.reason


@pytest.mark.parametrize("status", ["STAGED", "PROVISIONED"])
def test_pending_users_are_pushed_when_asked(status):
    assert decide(status, True, PUSH_PENDING).action is UPSERT


@pytest.mark.parametrize("status", ["ACTIVE", "LOCKED_OUT", "DEPROVISIONED", None])
def test_suspended_and_pending_switches_do_not_touch_other_rows(status):
    expected = decide(status, True, DEFAULT).action
    assert decide(status, True, IGNORE_SUSPENDED).action is expected
    assert decide(status, True, DEACTIVATE_SUSPENDED).action is expected
    assert decide(status, True, PUSH_PENDING).action is expected


def test_deleted_user_reason_says_so():
    assert "no longer exists" in decide(None, True, DEFAULT).reason


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_every_decision_has_a_reason(status):
    assert decide(status, True, DEFAULT).reason
