"""The target state of one (app, user), decided from Okta's state, never from the event (docs/architecture.md).

| Okta user status              | assigned                          | not assigned       |
|-------------------------------|-----------------------------------|--------------------|
| ACTIVE                        | active (create or update)         | active=false       |
| LOCKED_OUT, PASSWORD_EXPIRED, | active (sign-in states: Okta does | active=false       |
| RECOVERY                      | not deprovision; profile flows)   |                    |
| SUSPENDED                     | `suspended: ignore` (default) ->  | active=false       |
|                               | nothing sent, as Okta's client;   |                    |
|                               | `deactivate` -> false             |                    |
| STAGED, PROVISIONED (pending) | `push_pending_users` -> active,   | active=false       |
|                               | else nothing sent                 |                    |
| DEPROVISIONED, deleted (404)  | active=false                      | active=false       |

Suspension: Okta's SCIM 1.1 and 2.0 pages (since 2021) say no deprovisioning is sent for a suspended user (brief,
section 3); an older 2.0 page said ``active=false``, which ``suspended: deactivate`` keeps as an option.
``active=false`` is sent only to an account that exists (linked or found by lookup); nothing is ever deleted.
Actions switched off in the connector (`create_users`, `update_users`, `deactivate_users`) are honoured by the
dispatcher, which is the one that knows whether the account exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import PlanAction

__all__ = ["Decision", "decide"]

SIGN_IN_STATES = frozenset({"LOCKED_OUT", "PASSWORD_EXPIRED", "RECOVERY"})
PENDING = frozenset({"STAGED", "PROVISIONED"})


@dataclass(frozen=True)
class Decision:
    action: PlanAction | None  # None: nothing to send
    reason: str


def decide(status: str | None, assigned: bool, app: AppConnector) -> Decision:
    if status is None:
        return Decision(PlanAction.DEACTIVATE, "user no longer exists in Okta")
    if not assigned:
        return Decision(PlanAction.DEACTIVATE, "not assigned to the app")
    if status == "ACTIVE" or status in SIGN_IN_STATES:
        return Decision(PlanAction.UPSERT, f"{status} and assigned")
    if status == "SUSPENDED":
        if app.suspended == "deactivate":
            return Decision(PlanAction.DEACTIVATE, "SUSPENDED (suspended: deactivate)")
        return Decision(None, "SUSPENDED (suspended: ignore)")
    if status in PENDING:
        if app.actions.push_pending_users:
            return Decision(PlanAction.UPSERT, f"{status} (push_pending_users)")
        return Decision(None, f"{status}: pending users are not pushed")
    return Decision(PlanAction.DEACTIVATE, f"{status}")
