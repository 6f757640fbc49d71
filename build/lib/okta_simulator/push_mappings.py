"""Okta's own group push (`/api/v1/apps/{appId}/group-push/mappings`), with the System Log events it writes.

Only apps Okta provisions itself have push mappings (spec tag GroupPushMapping: "You must have provisioning
enabled in the target app"). A target group is a group *in the app* (`00g…`, what Okta calls an app group);
the simulator keeps those per app in `org.target_groups`, apart from the org's Okta groups.
Events (ODD event-types table), all with targets AppInstance, UserGroup (source), GroupPushMapping:
  create            application.provision.group_push.mapping.created (+ .pushed when created ACTIVE)
  status ACTIVE     application.provision.group_push.activate_mapping + .pushed (the initial push)
  status INACTIVE   application.provision.group_push.deactivate_mapping
  source renamed    application.provision.group_push.updated (ACTIVE mappings only)
  delete            application.provision.group_push.removed, whatever `deleteTargetGroup` says (no event
                    records it); also when the source group is deleted in Okta
"""
from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from .apps_actions import get_app
from .domain import App, PushMapping
from .errors import OktaError, invalid, not_found
from .events import app_target, group_target, push_mapping_target
from .ids import iso, okta_id, parse_iso
from .sim import Simulator

STATUSES = ("ACTIVE", "INACTIVE")


def _provisioned_app(sim: Simulator, app_id: str) -> App:
    """The spec documents 403 (E0000006, AccessDenied) on all five operations and no other error common to them,
    and its tag says provisioning must be enabled: so an app without Okta provisioning answers 403."""
    app = get_app(sim, app_id)
    if not app.provisioning:
        raise OktaError(403, "E0000006", "You do not have permission to perform the requested action",
                        ["Provisioning is not enabled for this application"])
    return app


def get_mapping(sim: Simulator, app_id: str, mapping_id: str) -> PushMapping:
    app = _provisioned_app(sim, app_id)
    mapping = sim.org.push_mappings.get(mapping_id)
    if mapping is None or mapping.app_id != app.id:
        raise not_found("GroupPushMapping", mapping_id)
    return mapping


def _record(sim: Simulator, event_type: str, mapping: PushMapping, token_id: str | None) -> None:
    app, group = sim.org.apps[mapping.app_id], sim.org.groups[mapping.source_group_id]
    uri = f"/api/v1/apps/{app.id}/group-push/mappings/{mapping.id}"
    sim.record(event_type, [app_target(app), group_target(group), push_mapping_target(mapping, group)], uri, token_id)


def _push(sim: Simulator, mapping: PushMapping, token_id: str | None) -> None:
    mapping.last_push = sim.now()
    _record(sim, "application.provision.group_push.pushed", mapping, token_id)


def _target_group(sim: Simulator, app: App, target_id: str | None, target_name: str | None) -> str:
    """Link to `target_id`, or to the app group named `target_name` (created when missing)."""
    if (target_id is None) == (target_name is None):
        raise invalid("targetGroupId: Provide either targetGroupId or targetGroupName, not both")
    groups = sim.org.target_groups.setdefault(app.id, {})
    if target_id is not None:
        if target_id not in groups:
            raise invalid(f"targetGroupId: No group {target_id} in the application")
        return target_id
    found = [gid for gid, name in groups.items() if name == target_name]
    target_id = found[0] if found else okta_id("00g")
    groups[target_id] = target_name
    return target_id


def create_mapping(sim: Simulator, app_id: str, source_group_id: str, target_id: str | None = None,
                   target_name: str | None = None, status: str = "ACTIVE", token_id: str | None = None) -> PushMapping:
    app = _provisioned_app(sim, app_id)
    if status not in STATUSES:
        raise invalid(f"status: must be one of {STATUSES}")
    if source_group_id not in sim.org.groups:
        raise invalid(f"sourceGroupId: No group {source_group_id}")
    mine = [m for m in sim.org.push_mappings.values() if m.app_id == app.id]
    if any(m.source_group_id == source_group_id for m in mine):
        raise invalid(f"sourceGroupId: Group {source_group_id} is already pushed to this application")
    target = _target_group(sim, app, target_id, target_name)
    if any(m.target_group_id == target for m in mine):
        raise invalid(f"targetGroupId: Group {target} is already linked to another push mapping")
    now = sim.now()
    mapping = PushMapping(okta_id("gPm"), app.id, source_group_id, target, status, now, now)
    sim.org.push_mappings[mapping.id] = mapping
    _record(sim, "application.provision.group_push.mapping.created", mapping, token_id)
    if status == "ACTIVE":
        _push(sim, mapping, token_id)
    return mapping


def set_status(sim: Simulator, app_id: str, mapping_id: str, status: str, token_id: str | None = None) -> PushMapping:
    mapping = get_mapping(sim, app_id, mapping_id)
    if status not in STATUSES:
        raise invalid(f"status: must be one of {STATUSES}")
    if status == mapping.status:
        return mapping
    mapping.status, mapping.last_updated = status, sim.now()
    verb = "activate" if status == "ACTIVE" else "deactivate"
    _record(sim, f"application.provision.group_push.{verb}_mapping", mapping, token_id)
    if status == "ACTIVE":
        _push(sim, mapping, token_id)
    return mapping


def delete_mapping(sim: Simulator, app_id: str, mapping_id: str, delete_target_group: bool = False,
                   token_id: str | None = None) -> None:
    """Okta deletes only INACTIVE mappings. The spec documents no 400 on this operation, so an ACTIVE mapping
    answers its documented 403 (E0000006) with the reason as the cause."""
    mapping = get_mapping(sim, app_id, mapping_id)
    if mapping.status == "ACTIVE":
        raise OktaError(403, "E0000006", "You do not have permission to perform the requested action",
                        ["The group push mapping must be in an INACTIVE state"])
    _remove(sim, mapping, token_id)
    if delete_target_group:
        sim.org.target_groups.get(mapping.app_id, {}).pop(mapping.target_group_id, None)


def _remove(sim: Simulator, mapping: PushMapping, token_id: str | None) -> None:
    _record(sim, "application.provision.group_push.removed", mapping, token_id)
    del sim.org.push_mappings[mapping.id]


def remove_mappings_of_group(sim: Simulator, group_id: str) -> None:
    """The source group is being deleted in Okta: its mappings go (the groups in the apps stay)."""
    for mapping in [m for m in sim.org.push_mappings.values() if m.source_group_id == group_id]:
        _remove(sim, mapping, None)


def push_group_update(sim: Simulator, group_id: str) -> None:
    """The source group's profile changed: Okta pushes it through every ACTIVE mapping."""
    for mapping in [m for m in sim.org.push_mappings.values() if m.source_group_id == group_id]:
        if mapping.status == "ACTIVE":
            mapping.last_push = sim.now()
            _record(sim, "application.provision.group_push.updated", mapping, None)


def list_mappings(sim: Simulator, app_id: str, source_group_id: str | None = None, status: str | None = None,
                  last_updated: str | None = None) -> list[PushMapping]:
    app = _provisioned_app(sim, app_id)
    since = _parse_since(last_updated)
    return [m for m in sim.org.push_mappings.values() if m.app_id == app.id
            and source_group_id in (None, m.source_group_id) and status in (None, m.status)
            and (since is None or m.last_updated >= since)]


def _parse_since(value: str | None) -> float | None:
    try:
        return parse_iso(value) if value else None
    except ValueError:
        raise invalid("lastUpdated: use YYYY-MM-DDTHH:mm:ssZ") from None


def mapping_json(mapping: PushMapping, base: str) -> dict:
    body = {"id": mapping.id, "created": iso(mapping.created), "lastUpdated": iso(mapping.last_updated),
            "errorSummary": "", "sourceGroupId": mapping.source_group_id, "status": mapping.status,
            "targetGroupId": mapping.target_group_id,
            "_links": {"app": {"href": f"{base}/api/v1/apps/{mapping.app_id}"},
                       "sourceGroup": {"href": f"{base}/api/v1/groups/{mapping.source_group_id}"},
                       "targetGroup": {"href": f"{base}/api/v1/groups/{mapping.target_group_id}"}}}
    if mapping.last_push is not None:
        body["lastPush"] = iso(mapping.last_push)
    return body


def _page(sim: Simulator, request: Request, items: list[PushMapping], after: str | None, limit: int) -> JSONResponse:
    ids = [m.id for m in items]
    if after is not None and after not in ids:
        raise invalid("after: The 'after' parameter is invalid")
    start = ids.index(after) + 1 if after is not None else 0
    chunk = items[start:start + limit]
    response = JSONResponse([mapping_json(m, sim.settings.org_url) for m in chunk])
    url = f"{sim.settings.org_url}{request.url.path}"
    response.headers.append("Link", f'<{url}{"?" + request.url.query if request.url.query else ""}>; rel="self"')
    if start + limit < len(items) and chunk:
        params = {**{k: v for k, v in request.query_params.items() if k != "after"}, "after": chunk[-1].id}
        response.headers.append("Link", f'<{url}?{urlencode(params)}>; rel="next"')
    return response


class NewMapping(BaseModel):
    """Spec schema CreateGroupPushMappingRequest (`appConfig` is for Active Directory only, accepted and ignored)."""

    sourceGroupId: str
    targetGroupId: str | None = None
    targetGroupName: str | None = None
    status: str = "ACTIVE"
    appConfig: dict | None = None


def build_push_mappings_router(sim: Simulator) -> APIRouter:
    """Mounted under `/api/v1` by api.py; the `apps` rate-limit bucket (plans.bucket_for)."""
    r = APIRouter(prefix="/apps/{app_id}/group-push/mappings")
    base = lambda: sim.settings.org_url  # noqa: E731

    @r.get("")
    async def list_push_mappings(request: Request, app_id: str, after: str | None = None,
                                 limit: int = Query(100, ge=1, le=1000), lastUpdated: str | None = None,
                                 sourceGroupId: str | None = None,
                                 status: str | None = Query(None, pattern="^(ACTIVE|ERROR|INACTIVE)$")):
        return _page(sim, request, list_mappings(sim, app_id, sourceGroupId, status, lastUpdated), after, limit)

    @r.post("", status_code=201)
    async def create_push_mapping(request: Request, app_id: str, body: NewMapping):
        mapping = create_mapping(sim, app_id, body.sourceGroupId, body.targetGroupId, body.targetGroupName,
                                 body.status, request.state.token_id)
        return mapping_json(mapping, base())

    @r.get("/{mapping_id}")
    async def get_push_mapping(app_id: str, mapping_id: str):
        return mapping_json(get_mapping(sim, app_id, mapping_id), base())

    @r.patch("/{mapping_id}")
    async def update_push_mapping(request: Request, app_id: str, mapping_id: str,
                                  status: str = Body(..., embed=True)):
        return mapping_json(set_status(sim, app_id, mapping_id, status, request.state.token_id), base())

    @r.delete("/{mapping_id}", status_code=204)
    async def delete_push_mapping(request: Request, app_id: str, mapping_id: str, deleteTargetGroup: bool = False):
        """The spec marks `deleteTargetGroup` required *and* gives it a default (false): we take the default."""
        delete_mapping(sim, app_id, mapping_id, deleteTargetGroup, request.state.token_id)
        return Response(status_code=204)

    return r
