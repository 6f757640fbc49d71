"""Applying one plan to one SCIM target, exactly as Okta's client would, without duplicates or regressions.

* one writer per key: the engine (``engine.py``) runs a key's plans one at a time, on the one replica that owns the
  key's partition, and reads the key's link before; this module only applies;
* stale: a plan whose version is not newer than the last applied for its key is skipped; the link the outcome
  carries is stored conditionally on the version (and fenced by the partition's token) before the plan counts;
* upsert: linked -> GET + PUT by the stored id (404 -> look up again, relink or recreate); not linked -> look up
  by the unique field first (a create whose answer was lost is found, not created twice), then POST; a 409 on POST
  links the existing account;
* the PUT is the account as read with the connector's mapped attributes set on it (a mapped attribute the plan has
  no value for is cleared), everything else kept, ``If-Match`` when the target versions it (``ScimClient``); a POST
  carries a random password unless ``password_on_create: none``;
* deactivate: ``active=false`` on the linked or found account; never a DELETE;
* adoption (an existing account found by the unique field, as Okta links it): never an account another link of the
  app holds (another Okta user's) nor one whose ``externalId`` names another user than the plan would write there.
  Such a plan is held for a person: audited ``held`` with the reason ``adoption_held``, nothing written, no link
  stored; the drift check shows the case. The next plan of the key looks again (a person may have fixed it).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from opentelemetry import trace

from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import AuditStep, PlanAction, Reason, ScimOperationPlanned
from okta_bridge.telemetry import ATTR
from scim_dispatcher.adapters.scim_client import ScimClient
from scim_dispatcher.adapters.scim_errors import ScimConflictError, ScimNotFoundError, ScimPermanentError
from scim_dispatcher.adapters.scim_user import ScimUser
from scim_dispatcher.ports import LinkOwners
from okta_bridge.stores.links import Link, LinkWrite

tracer = trace.get_tracer("scim_dispatcher")


@dataclass(frozen=True)
class Outcome:
    """What applying one plan did (a failure raises instead)."""

    step: AuditStep  # applied, skipped or skipped_stale
    reason: Reason
    target_id: str | None
    method: str | None
    path: str | None
    http_status: int | None
    detail: str
    duration_ms: float
    returned: dict[str, Any] | None = None  # the account as the target answered the write
    link: LinkWrite | None = None  # to store before the plan counts as applied (None: a stale plan, nothing to store)

    def stale(self, why: str) -> "Outcome":
        return replace(self, step=AuditStep.SKIPPED_STALE, reason=Reason.STALE, detail=why)


@dataclass(frozen=True)
class _Write:
    """The result of one deactivate or upsert, before the link is saved."""

    step: AuditStep
    reason: Reason
    target_id: str | None
    detail: str
    active: bool | None  # what the link records (None: unknown, left as it was)
    method: str | None = None
    path: str | None = None
    http_status: int | None = None
    returned: ScimUser | None = None
    user_name: str | None = None  # the account's userName, kept with the link (a group member's display)


def _applied(target_id: str | None, detail: str, active: bool | None, method: str | None = None,
             status: int | None = None, returned: ScimUser | None = None, user_name: str | None = None) -> _Write:
    path = None if method is None else ("/Users" if method == "POST" else "/Users/{id}")
    return _Write(AuditStep.APPLIED, Reason.APPLIED, target_id, detail, active, method, path, status, returned,
                  user_name or (returned.user_name if returned is not None else None))


def _action_off(target_id: str | None, detail: str, active: bool | None = None) -> _Write:
    return _Write(AuditStep.SKIPPED, Reason.ACTION_OFF, target_id, detail, active)


class AdoptionHeld(Exception):
    """An existing account that must not be linked to the plan's user; the plan is held for a person. The text
    names no person's data (the account is in the audit record's ``target_id``)."""

    def __init__(self, target_id: str, why: str) -> None:
        super().__init__(why)
        self.target_id, self.why = target_id, why

    def write(self) -> _Write:
        return _Write(AuditStep.HELD, Reason.ADOPTION_HELD, self.target_id,
                      f"existing account not adopted: {self.why}; held for a person (see the drift check)", None)


@dataclass
class Dispatcher:
    """Applies one user plan, given its key's link. The caller guarantees one writer per key (the engine runs a key's
    plans one at a time, on the one replica that owns its partition) and stores the outcome's link write."""

    apps: dict[str, AppConnector]
    clients: dict[str, ScimClient]
    owners: LinkOwners | None = None  # who holds an account (the adoption guard); None: no other links known

    async def apply(self, plan: ScimOperationPlanned, link: Link | None, fence: int = 0) -> Outcome:
        app = self.apps[plan.app_id]
        started = time.perf_counter()
        if link and link.applied_version >= plan.version:
            return Outcome(AuditStep.SKIPPED_STALE, Reason.STALE, link.target_id, None, None, None,
                           f"plan v{plan.version} is older than applied v{link.applied_version}", _ms(started))
        with tracer.start_as_current_span(f"apply {plan.action.value}") as span:
            span.set_attribute(ATTR.APP_ID, plan.app_id)
            span.set_attribute(ATTR.USER_ID, plan.okta_user_id)
            span.set_attribute(ATTR.PLAN_VERSION, plan.version)
            try:
                if plan.action is PlanAction.DEACTIVATE:
                    write = await self._deactivate(app, plan, link)
                else:
                    write = await self._upsert(app, plan, link)
            except AdoptionHeld as held:
                span.add_event("existing account not adopted: held for a person")
                write = held.write()
            returned = dict(write.returned.raw) if write.returned is not None else None
            stored = None if write.reason is Reason.ADOPTION_HELD else LinkWrite(
                plan.app_id, plan.okta_user_id, plan.version, write.target_id, write.active, fence, write.user_name)
            return Outcome(write.step, write.reason, write.target_id, write.method, write.path, write.http_status,
                           write.detail, _ms(started), returned, stored)

    async def _deactivate(self, app: AppConnector, plan: ScimOperationPlanned, link: Link | None) -> _Write:
        client = self.clients[app.okta_app_id]
        if not app.actions.deactivate_users:
            return _action_off(link.target_id if link else None, "deactivate_users is off")
        current = await self._current(client, plan, link)
        if current is None:
            return _applied(None, "no account in the target: nothing to deactivate", False)
        if current.active is False:
            return _applied(current.id, "already inactive", False)
        await client.set_active(current.id, False, current)
        method = "PATCH" if app.deactivate_with == "PATCH" else "PUT"
        return _applied(current.id, "deactivated (active=false)", False, method, 200, user_name=current.user_name)

    async def _upsert(self, app: AppConnector, plan: ScimOperationPlanned, link: Link | None) -> _Write:
        client = self.clients[app.okta_app_id]
        # every mapped attribute is managed: one the plan has no value for is cleared on update (None)
        attrs: dict[str, Any] = {path: None for path in app.mappings}
        attrs.update({a.path: a.value for a in plan.attributes})
        attrs["active"] = True
        current = await self._current(client, plan, link)
        if current is None:
            if not app.actions.create_users:
                return _action_off(None, "create_users is off")
            created = await self._create(client, app, plan, attrs)
            if created is not None:
                return _applied(created.id, "created", True, "POST", 201, created)
            current = await self._adopt(client, plan)  # 409: the account exists, link it (if it may be)
            if current is None:
                raise ScimConflictError("POST", "/Users", 409, "409 on create but no account matches the unique field",
                                        version=client.version)
        if not app.actions.update_users:
            if current.active is False:
                await client.set_active(current.id, True, current)
                return _applied(current.id, "reactivated (update_users off)", True, "PUT", 200,
                                user_name=current.user_name)
            return _action_off(current.id, "update_users is off", current.active)
        replaced = await client.update_user(current, attrs)
        linked = "" if link and link.target_id == current.id else " (linked existing account)"
        return _applied(current.id, "updated" + linked, True, "PUT", 200, replaced)

    async def _create(self, client: ScimClient, app: AppConnector, plan: ScimOperationPlanned,
                      attrs: dict[str, Any]):
        body = dict(attrs)
        if app.password_on_create == "random":  # as Okta's client; a random one, never stored or logged
            body["password"] = secrets.token_urlsafe(24)
        try:
            return await client.create_user(body)
        except ScimConflictError:
            return None
        except ScimPermanentError as exc:
            if exc.status is None or not 200 <= exc.status < 300:
                raise
            # "create returned empty user" (or an unreadable 2xx): the account may exist now; find it, never re-POST
            found = await self._adopt(client, plan)
            if found is None:
                raise
            return found

    async def _current(self, client: ScimClient, plan: ScimOperationPlanned, link: Link | None):
        """The account this key owns: by the stored id, else by lookup on the unique field (never blind create)."""
        if link and link.target_id:
            try:
                return await client.get_user(link.target_id)
            except ScimNotFoundError:
                trace.get_current_span().add_event("linked account gone: looking up again")
        return await self._adopt(client, plan)

    # --- adoption of an existing account ----------------------------------------------------------------------------
    async def _adopt(self, client: ScimClient, plan: ScimOperationPlanned) -> ScimUser | None:
        """The account the unique field finds, if it may become this key's (as Okta links an existing account);
        raises :class:`AdoptionHeld` when it belongs to someone else."""
        found = await client.find_user(plan.unique_value)
        if found is None:
            return None
        why = await self._adoption_conflict(plan, found)
        if why:
            raise AdoptionHeld(found.id, why)
        # read by id before writing to it: a search answer may leave attributes out (an update PUTs back what it
        # read, so they would be lost) and carries no ETag for If-Match
        return await client.get_user(found.id)

    async def _adoption_conflict(self, plan: ScimOperationPlanned, found: ScimUser) -> str | None:
        """Why ``found`` must not be linked to the plan's user, or None. Its ``externalId`` is compared with what the
        plan writes there (the Okta user id by default); an app that does not map ``externalId`` is not judged by
        it. Then the app's other links: an account another Okta user's link holds is theirs."""
        ours = next((a.value for a in plan.attributes if a.path == "externalId"), None)
        theirs = found.raw.get("externalId")
        if ours is not None and theirs not in (None, "") and str(theirs) != str(ours):
            return "its externalId names another Okta user"
        if self.owners is not None:
            holder = await self.owners.holder_of(plan.app_id, found.id, plan.okta_user_id)
            if holder is not None:
                return f"another Okta user's link ({holder}) holds it"
        return None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
