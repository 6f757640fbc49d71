"""Applying one plan to one SCIM target, exactly as Okta's client would, without duplicates or regressions.

* one writer per key: the engine (``engine.py``) runs a key's plans one at a time, on the one replica that owns the
  key's partition, and reads the key's link before; this module only applies;
* stale: a plan whose version is not newer than the last applied for its key is skipped; the link the outcome
  carries is stored conditionally on the version (and fenced by the partition's token) before the plan counts;
* upsert: linked -> GET + PUT by the stored id (404 -> look up again, relink or recreate); not linked -> look up
  by the unique field first (a create whose answer was lost is found, not created twice), then POST; a 409 on POST
  links the existing account;
* deactivate: ``active=false`` on the linked or found account; never a DELETE.
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


def _applied(target_id: str | None, detail: str, active: bool | None, method: str | None = None,
             status: int | None = None, returned: ScimUser | None = None) -> _Write:
    path = None if method is None else ("/Users" if method == "POST" else "/Users/{id}")
    return _Write(AuditStep.APPLIED, Reason.APPLIED, target_id, detail, active, method, path, status, returned)


def _action_off(target_id: str | None, detail: str, active: bool | None = None) -> _Write:
    return _Write(AuditStep.SKIPPED, Reason.ACTION_OFF, target_id, detail, active)


@dataclass
class Dispatcher:
    """Applies one user plan, given its key's link. The caller guarantees one writer per key (the engine runs a key's
    plans one at a time, on the one replica that owns its partition) and stores the outcome's link write."""

    apps: dict[str, AppConnector]
    clients: dict[str, ScimClient]

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
            if plan.action is PlanAction.DEACTIVATE:
                write = await self._deactivate(app, plan, link)
            else:
                write = await self._upsert(app, plan, link)
            returned = dict(write.returned.raw) if write.returned is not None else None
            return Outcome(write.step, write.reason, write.target_id, write.method, write.path, write.http_status,
                           write.detail, _ms(started), returned,
                           LinkWrite(plan.app_id, plan.okta_user_id, plan.version, write.target_id, write.active,
                                     fence))

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
        return _applied(current.id, "deactivated (active=false)", False, method, 200)

    async def _upsert(self, app: AppConnector, plan: ScimOperationPlanned, link: Link | None) -> _Write:
        client = self.clients[app.okta_app_id]
        attrs: dict[str, Any] = {a.path: a.value for a in plan.attributes}
        attrs["active"] = True
        current = await self._current(client, plan, link)
        if current is None:
            if not app.actions.create_users:
                return _action_off(None, "create_users is off")
            created = await self._create(client, app, plan, attrs)
            if created is not None:
                return _applied(created.id, "created", True, "POST", 201, created)
            current = await client.find_user(plan.unique_value)  # 409: the account exists, link it
            if current is None:
                raise ScimConflictError("POST", "/Users", 409, "409 on create but no account matches the unique field",
                                        version=client.version)
        if not app.actions.update_users:
            if current.active is False:
                await client.set_active(current.id, True, current)
                return _applied(current.id, "reactivated (update_users off)", True, "PUT", 200)
            return _action_off(current.id, "update_users is off", current.active)
        replaced = await client.replace_user(current.id, attrs)
        linked = "" if link and link.target_id == current.id else " (linked existing account)"
        return _applied(current.id, "updated" + linked, True, "PUT", 200, replaced)

    async def _create(self, client: ScimClient, app: AppConnector, plan: ScimOperationPlanned,
                      attrs: dict[str, Any]):
        body = dict(attrs)
        if app.actions.sync_password:  # Okta never reveals passwords: a random one, never stored or logged
            body["password"] = secrets.token_urlsafe(24)
        try:
            return await client.create_user(body)
        except ScimConflictError:
            return None
        except ScimPermanentError as exc:
            if exc.status is None or not 200 <= exc.status < 300:
                raise
            # "create returned empty user" (or an unreadable 2xx): the account may exist now; find it, never re-POST
            found = await client.find_user(plan.unique_value)
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
        return await client.find_user(plan.unique_value)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
