"""Drift check and reconcile: the backstop for anything the System Log ever missed.

Per app it compares three views, all read fresh:

* Okta's assignments: ``GET /api/v1/apps/{id}/users?limit=500&expand=user`` (one apps-bucket call per 500);
* the target's accounts: ``GET /Users?startIndex=…&count=100`` until ``totalResults`` (as Okta's import reads);
* the bridge's links (Okta user -> target account).

What each assigned user should look like comes from the translator's state table (the same decision a change
would get). Differences found:

``missing``          should be active, but no account, or an inactive one
``should_be_inactive`` should be inactive (deactivated, unassigned; suspended only with ``suspended: deactivate``),
                     but the account is active
``unlinked``         an account that belongs to the user (externalId or unique field) but is not linked
``broken_link``      the link points at an account the target no longer has
``duplicate``        more than one active account belongs to the user (externalId or unique field): reported,
                     never touched, because which one holds the app's data is for a person to decide. On a target
                     that does not enforce unique userNames, a create whose answer was lost can be doubled; this
                     is where that shows
``unknown``          active target accounts that match no Okta user of the app (reported, never touched: they may
                     be the app's own local accounts)
``adoption_held``    an assigned user without an account of their own whose app username finds an account that
                     another user's link holds or whose ``externalId`` names another Okta user: the dispatcher does
                     not adopt it (held for a person), so it is reported, never repaired
``unreadable``       assigned users whose state Okta did not answer readably (no user, no status, an unknown one):
                     reported, never judged; the next check reads them again

An app user listed without its embedded user (or with one the bridge cannot read) is read as the full sync reads
it: one filtered listing of such users, then by id; only a 404 by id means the user is gone.

``repair`` asks the translator for a full sync of the app (``AppSyncRequested(reason=operator)``): every assigned
user is planned from Okta's state and applied through the usual version checks, lookups before create, retries and
audit; users known to the bridge and no longer assigned are deactivated. Run on a schedule (``--interval``), a check
costs ceil(n/500) apps-bucket calls per app, and the Okta client keeps to the rate-limit headers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import PlanAction
from okta_bridge.okta_client import OktaBadAnswerError, user_problem
from scim_dispatcher.adapters.scim_client import ScimClient
from translator.state_table import decide

__all__ = ["Drift", "check_app"]

EXAMPLES = 10
REPORT_ONLY = ("duplicate", "unknown", "adoption_held", "unreadable")


@dataclass
class Drift:
    app: str
    assigned: int = 0
    accounts: int = 0
    found: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in (
        "missing", "should_be_inactive", "unlinked", "broken_link", "duplicate", "unknown", "adoption_held",
        "unreadable")})

    @property
    def repairable(self) -> int:
        """What a full sync repairs; duplicates and unknown accounts are for a person."""
        return sum(len(v) for k, v in self.found.items() if k not in REPORT_ONLY)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.found.items()}


async def check_app(app: AppConnector, okta: Any, scim: ScimClient, links: dict[str, str]) -> Drift:
    """``links``: Okta user id -> target account id, as the bridge stored them."""
    drift = Drift(app.name)
    accounts: dict[str, Any] = {}
    async for page in scim.list_users():
        for user in page:
            accounts[user.id] = user
    drift.accounts = len(accounts)
    by_external: dict[str, list[Any]] = {}
    by_unique: dict[str, list[Any]] = {}
    for u in accounts.values():  # in the target's listing order: the first is the one a lookup would find
        if u.raw.get("externalId"):
            by_external.setdefault(str(u.raw["externalId"]), []).append(u)
        by_unique.setdefault(str(u.raw.get(app.unique_user_field, "")).lower(), []).append(u)
    claimed: set[str] = set()
    assigned: set[str] = set()
    app_users: list[dict[str, Any]] = []
    async for page in okta.list_app_users(app.okta_app_id):
        app_users.extend(page)
    users, unreadable = await _okta_users(okta, app_users)
    holders = {target_id: user_id for user_id, target_id in links.items()}
    for app_user in app_users:
        user_id = app_user["id"]
        assigned.add(user_id)
        drift.assigned += 1
        if user_id in unreadable:
            drift.found["unreadable"].append(user_id)
            decision = None
        else:
            user = users.get(user_id)
            decision = decide(user.get("status") if user else None, True, app)
        linked = links.get(user_id)
        account = accounts.get(linked) if linked else None
        if linked and account is None:
            drift.found["broken_link"].append(user_id)
        username = ((app_user.get("credentials") or {}).get("userName") or "").lower()
        owned = {u.id: u for u in [*by_external.get(user_id, []), *(by_unique.get(username, []) if username
                                                                      else [])]}
        if account is None:
            account = next(iter(owned.values()), None)
            if account is not None and _held(app, user_id, account, holders):
                drift.found["adoption_held"].append(user_id)
                claimed.add(account.id)
                continue
            if account is not None and linked != account.id:
                drift.found["unlinked"].append(user_id)
        if account is not None:
            claimed.add(account.id)
            others = [u for u in owned.values() if u.id != account.id and u.active is not False]
            if others:
                drift.found["duplicate"].append(user_id)
                claimed.update(u.id for u in others)
        active = bool(account is not None and account.active is not False)
        if decision is None:
            continue
        if decision.action is PlanAction.UPSERT and not active:
            drift.found["missing"].append(user_id)
        elif decision.action is PlanAction.DEACTIVATE and active:
            drift.found["should_be_inactive"].append(user_id)
    for user_id, target_id in links.items():  # linked users no longer assigned: should be inactive
        account = accounts.get(target_id)
        if user_id not in assigned and account is not None:
            claimed.add(target_id)
            if account.active is not False and app.actions.deactivate_users:
                drift.found["should_be_inactive"].append(user_id)
    drift.found["unknown"] = sorted(a.id for a in accounts.values()
                                    if a.id not in claimed and a.active is not False)
    return drift


def _held(app: AppConnector, user_id: str, account: Any, holders: dict[str, str]) -> bool:
    """The dispatcher's adoption guard, seen from the three views: another user's link holds the account, or its
    ``externalId`` names another Okta user (when the app maps ``externalId`` from the Okta id, as by default)."""
    if holders.get(account.id, user_id) != user_id:
        return True
    external = account.raw.get("externalId")
    return app.mappings.get("externalId") == "id" and external not in (None, "") and str(external) != user_id


async def _okta_users(okta: Any, app_users: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any] | None],
                                                                            dict[str, str]]:
    """The Okta user of each app user (None: gone, a 404 by id) and the ids Okta did not answer readably (why).

    The embedded user when it is readable; the others as the full sync reads them: one filtered listing of the
    users bucket, then by id for those it leaves out. Without this, a listing without ``_embedded.user`` reads as
    "every assigned user is gone" and ``--repair`` would act on that."""
    users: dict[str, dict[str, Any] | None] = {}
    for app_user in app_users:
        embedded = (app_user.get("_embedded") or {}).get("user")
        if user_problem(embedded, app_user["id"]) is None:
            users[app_user["id"]] = embedded
    rest = sorted({a["id"] for a in app_users} - set(users))
    if rest:
        for user_id, user in (await okta.list_users_by_ids(rest)).items():
            if user_problem(user, user_id) is None:
                users[user_id] = user
    unreadable: dict[str, str] = {}

    async def by_id(user_id: str) -> None:
        try:
            users[user_id] = (await okta.get_users([user_id]))[user_id]
        except OktaBadAnswerError as exc:
            unreadable[user_id] = str(exc)

    await asyncio.gather(*(by_id(u) for u in rest if u not in users))
    return users, unreadable
