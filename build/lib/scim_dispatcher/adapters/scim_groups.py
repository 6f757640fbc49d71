"""Group push over SCIM 1.1 and 2.0, as Okta's SCIM client sends it (okta-scim-protocol.md section 2).

:class:`ScimGroupClient` is a :class:`ScimClient` (same constructor, same request machinery, redaction, scrubbing
and error mapping) with the group operations added. Request shapes:

============== ================================================== =====================================================
operation      SCIM 1.1                                           SCIM 2.0
============== ================================================== =====================================================
find           ``GET /Groups?filter=displayName eq "…"&startIndex=1&count=100`` (both)
create         ``{schemas:[core1.0(+urn:okta:custom:group:1.0)],   ``{schemas:[…core:2.0:Group], displayName,
               displayName, urn:okta:custom:group:1.0:             members: []}`` (2.0 has no place for a description:
               {description}}``                                   it is not sent)
rename         PATCH ``{schemas, id, displayName}``                PATCH ``replace`` with value ``{id, displayName}``
add members    PATCH ``{schemas, members:[{value, display}, …]}`` PATCH ``add`` path ``members`` value
                                                                  ``[{value, display}, …]``
remove members PATCH ``{schemas, members:[{value, display,        PATCH one ``remove`` op per member, path
               operation:"delete"}, …]}``                          ``members[value eq "id"]``, all in one request
replace        PUT of the whole group (always)                     PATCH ``replace`` path ``members``
delete         ``DELETE /Groups/{id}`` (204, 200 accepted)
============== ================================================== =====================================================

``display`` is the member's userName on the target, as Okta sends it, when the caller knows it (``display=`` maps
member ids to it); a member whose name is not known goes as ``{value}`` alone.

With ``group_update="PUT"`` (apps made with the App Integration Wizard, or targets without PATCH) rename and every
membership change is a read-modify-write: ``GET /Groups/{id}`` then ``PUT`` of the whole group as read (members
kept as ``{value, display}``, every other attribute sent back unchanged, ``meta`` left out). When the read gave a
version (``ETag`` header, else ``meta.version``) the PUT carries ``If-Match``; a 412 (the group changed on the
target in between) reads it again and re-applies the change, up to ``WRITE_ATTEMPTS`` times, then fails as
transient, so a concurrent change is never overwritten.

Real-server quirks handled: PATCH/PUT answered 204 without a body or 200 with the group (``GroupUpdate.group`` is
None or the group); ids equal to the displayName (paths are quoted, logs and errors carry ``/Groups/{id}``); 500
on PATCH/DELETE of a missing group stays a transient error as for users (``get_group`` answers 404 for it);
plain-text 401; ``application/json`` or ``application/scim+json`` answers; case-insensitive filters (the pick among
the results is exact first, then case-insensitive). A target without Groups (404 on the ``/Groups`` collection, 501
on any group request) raises :class:`ScimGroupsUnsupportedError` (permanent). A removal of a single member answered
``400`` with ``scimType: noTarget`` (the member is not in the group) counts as done and is reported in
``GroupUpdate.no_target``.

Batches: servers apply a PATCH all or nothing, so one bad member (deleted user, unknown id) fails the whole request
with a 400. :func:`split_until_isolated` bisects such a batch until every failing member is alone and applies the
rest. It works for both dialects: a 1.1 PATCH of several members is rejected as a whole in the same way, and a
1.1 removal has no ``noTarget`` (1.1 errors carry no scimType), so there an isolated 400 is reported as failed.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx

from opentelemetry import trace

from .scim_client import MAX_PAGES, WRITE_ATTEMPTS, ScimClient, _filter_literal
from .scim_error_mapping import Scrubber
from .scim_errors import (
    ScimError,
    ScimGroupsUnsupportedError,
    ScimNotFoundError,
    ScimPermanentError,
    ScimPreconditionFailedError,
    ScimTransientError,
)
from .scim_user import meta_version

__all__ = [
    "GROUP_EXTENSION_11",
    "GROUP_SCHEMA_20",
    "PATCH_OP_20",
    "GroupUpdate",
    "ScimGroup",
    "ScimGroupClient",
    "split_until_isolated",
]

GROUP_SCHEMA_20 = "urn:ietf:params:scim:schemas:core:2.0:Group"
GROUP_EXTENSION_11 = "urn:okta:custom:group:1.0"
PATCH_OP_20 = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PAGE = 100
_SEARCH = f"startIndex=1&count={PAGE}"
_ONE = "/Groups/{id}"
_UNSUPPORTED = "target does not support groups"
_log = logging.getLogger(__name__)
# the writes (method, redacted path, status) of the group plan being applied, for its audit record: a list shared by
# the tasks a plan's writes run in (set by :func:`recording_writes`)
_WRITES: contextvars.ContextVar[list[tuple[str, str, int]] | None] = contextvars.ContextVar("group_writes",
                                                                                            default=None)


def recording_writes() -> tuple[list[tuple[str, str, int]], contextvars.Token]:
    """Start recording the group writes made in this context (and the tasks it starts); reset with the token."""
    writes: list[tuple[str, str, int]] = []
    return writes, _WRITES.set(writes)


def stop_recording(token: contextvars.Token) -> None:
    _WRITES.reset(token)

T = TypeVar("T")


@dataclass(frozen=True)
class ScimGroup:
    """A group as the target returned it; ``member_ids`` are the members' ``value`` in the target's order; ``etag``
    the version a read gave (``ETag`` header, else ``meta.version``)."""

    id: str
    display_name: str | None
    member_ids: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    etag: str | None = field(default=None, compare=False)

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any], fallback_id: str | None = None,
                      etag: str | None = None) -> ScimGroup | None:
        """None when the resource has no id (and no fallback)."""
        raw_id = resource.get("id")
        group_id = str(raw_id) if raw_id not in (None, "") else fallback_id
        if group_id is None:
            return None
        name = _get(resource, "displayName")
        return cls(
            id=group_id,
            display_name=str(name) if name is not None else None,
            member_ids=tuple(_member_ids(_get(resource, "members"))),
            raw=resource,
            etag=etag or meta_version(resource),
        )


@dataclass(frozen=True)
class GroupUpdate:
    """What an update answered: ``group`` is the group when the target returned it (None after a 204 or an empty
    body); ``no_target`` lists members whose removal the target refused with ``noTarget`` (already absent)."""

    group: ScimGroup | None = None
    no_target: tuple[str, ...] = ()


class ScimGroupClient(ScimClient):
    """:class:`ScimClient` plus groups. ``group_update``: how rename and membership changes are sent."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        version: Literal["1.1", "2.0"],
        *,
        group_update: Literal["PATCH", "PUT"] = "PATCH",
        **kwargs: Any,
    ) -> None:
        if group_update not in ("PATCH", "PUT"):
            raise ValueError("group_update must be 'PATCH' or 'PUT'")
        super().__init__(http, base_url, version, **kwargs)
        self._group_update = group_update

    @property
    def group_update(self) -> str:
        return self._group_update

    # -- reads ---------------------------------------------------------------------------------------------------

    async def find_group(self, display_name: str) -> ScimGroup | None:
        """The group named ``display_name`` (exact match first, then case-insensitive), or None.

        Several case-insensitive matches and no exact one is a permanent error: the bridge must not guess."""
        expr = f'displayName eq "{_filter_literal(display_name)}"'
        path = f"/Groups?filter={quote(expr, safe='')}&{_SEARCH}"
        redacted = f"/Groups?filter=<redacted>&{_SEARCH}"
        scrub = self._scrub.with_values(identifiers=[display_name])
        try:
            status, data = await self._group_call("GET", path, redacted, scrub, collection=False)
        except ScimNotFoundError:
            # 404 on a search: "no match" on some servers (Okta accepts it in 2.0), or no /Groups at all.
            await self._probe_groups_endpoint()
            return None
        groups = _groups_of(data)
        exact = [g for g in groups if g.display_name == display_name]
        if len(exact) == 1:
            return exact[0]
        folded = display_name.casefold()
        loose = [g for g in groups if (g.display_name or "").casefold() == folded]
        if len(exact) > 1 or len(loose) > 1:
            count = max(len(exact), len(loose))
            raise self._permanent("GET", redacted, status, f"search returned {count} groups with that displayName")
        return loose[0] if loose else None

    async def get_group(self, group_id: str) -> ScimGroup:
        scrub = self._scrub.with_values(identifiers=[group_id])
        _, data, etag = await self._group_call("GET", _group_path(group_id), _ONE, scrub, etag=True)
        return ScimGroup.from_resource(data, fallback_id=group_id, etag=etag)  # type: ignore[return-value]

    async def list_groups(self) -> list[ScimGroup]:
        """Every group, paging ``startIndex``/``count=100`` up to ``totalResults`` as Okta's import does.

        The next ``startIndex`` follows the number of resources actually returned (servers may cap the page below
        ``count``); a page without new ids ends the walk (servers that ignore ``startIndex`` and answer every
        group on each page). A listing past ``MAX_PAGES`` pages is an error, never a shorter list."""
        seen: dict[str, ScimGroup] = {}
        start = 1
        for _ in range(MAX_PAGES):
            query = f"/Groups?startIndex={start}&count={PAGE}"
            _, data = await self._group_call("GET", query, query, self._scrub, collection=True)
            page = _groups_of(data)
            fresh = [g for g in page if g.id not in seen]
            for group in fresh:
                seen[group.id] = group
            total = _as_int(_get(data, "totalResults"))
            if not fresh or (total is not None and len(seen) >= total) or (total is None and len(page) < PAGE):
                return list(seen.values())
            start += len(page)
        raise self._permanent("GET", "/Groups?startIndex=<n>&count=<n>", None,
                              f"more than {MAX_PAGES} pages: the listing was stopped", reason="endless listing")

    # -- writes --------------------------------------------------------------------------------------------------

    async def create_group(self, display_name: str, description: str | None = None) -> ScimGroup:
        if self.version == "1.1":
            body: dict[str, Any] = {"schemas": [self._dialect.core_schema], "displayName": display_name}
            if description is not None:
                body["schemas"].append(GROUP_EXTENSION_11)
                body[GROUP_EXTENSION_11] = {"description": description}
        else:
            body = {"schemas": [GROUP_SCHEMA_20], "displayName": display_name, "members": []}
        scrub = self._scrub.with_values(identifiers=[display_name])
        empty = "create returned empty group"
        status, data = await self._group_call("POST", "/Groups", "/Groups", scrub, collection=True, body=body,
                                              empty=empty)
        group = ScimGroup.from_resource(data)
        if group is None:
            raise self._permanent("POST", "/Groups", status, "create returned a group without id")
        return group

    async def rename_group(self, group_id: str, display_name: str) -> GroupUpdate:
        if self._group_update == "PUT":
            return await self._read_modify_write(group_id, display_name=display_name)
        if self.version == "1.1":
            body = {"schemas": [self._dialect.core_schema], "id": group_id, "displayName": display_name}
        else:
            body = _patch_op({"op": "replace", "value": {"id": group_id, "displayName": display_name}})
        return await self._patch(group_id, body, [display_name])

    async def add_members(self, group_id: str, member_ids: Iterable[str],
                          display: Mapping[str, str] | None = None) -> GroupUpdate:
        """``display``: member id -> its userName on the target, sent beside ``value`` as Okta does."""
        members = _unique(member_ids)
        if not members:
            return GroupUpdate()
        names = display or {}
        if self._group_update == "PUT":
            return await self._read_modify_write(group_id, add=members, display=names)
        items = [_member(m, names) for m in members]
        if self.version == "1.1":
            body: dict[str, Any] = {"schemas": [self._dialect.core_schema], "members": items}
        else:
            body = _patch_op({"op": "add", "path": "members", "value": items})
        return await self._patch(group_id, body, [*members, *(names.get(m) for m in members)])

    async def remove_members(self, group_id: str, member_ids: Iterable[str],
                             display: Mapping[str, str] | None = None) -> GroupUpdate:
        """A single removal refused with 400 ``noTarget`` returns normally with ``no_target=(member,)``."""
        members = _unique(member_ids)
        if not members:
            return GroupUpdate()
        names = display or {}
        if self._group_update == "PUT":
            return await self._read_modify_write(group_id, remove=members)
        if self.version == "1.1":
            items = [{**_member(m, names), "operation": "delete"} for m in members]
            body: dict[str, Any] = {"schemas": [self._dialect.core_schema], "members": items}
        else:
            body = _patch_op(*({"op": "remove", "path": f'members[value eq "{_filter_literal(m)}"]'} for m in members))
        try:
            return await self._patch(group_id, body, [*members, *(names.get(m) for m in members)])
        except ScimPermanentError as exc:
            if len(members) == 1 and exc.status == 400 and (exc.scim_type or "").lower() == "notarget":
                _log.debug("PATCH %s: member already absent (noTarget)", _ONE)
                return GroupUpdate(no_target=tuple(members))
            raise

    async def replace_members(self, group_id: str, member_ids: Iterable[str],
                              display: Mapping[str, str] | None = None) -> GroupUpdate:
        """Make the membership exactly ``member_ids`` (2.0: PATCH replace; 1.1 or ``group_update="PUT"``: PUT)."""
        members = _unique(member_ids)
        names = display or {}
        if self.version == "1.1" or self._group_update == "PUT":
            return await self._read_modify_write(group_id, members=members, display=names)
        body = _patch_op({"op": "replace", "path": "members", "value": [_member(m, names) for m in members]})
        return await self._patch(group_id, body, [*members, *(names.get(m) for m in members)])

    async def delete_group(self, group_id: str) -> None:
        scrub = self._scrub.with_values(identifiers=[group_id])
        await self._group_call("DELETE", _group_path(group_id), _ONE, scrub, empty="", lax=True)

    # -- machinery -----------------------------------------------------------------------------------------------

    async def _patch(self, group_id: str, body: Mapping[str, Any], values: Sequence[str | None]) -> GroupUpdate:
        scrub = self._scrub.with_values(identifiers=[group_id, *values])
        return await self._write("PATCH", group_id, body, scrub)

    async def _write(self, method: str, group_id: str, body: Mapping[str, Any], scrub: Scrubber,
                     headers: Mapping[str, str] | None = None) -> GroupUpdate:
        _, data = await self._group_call(method, _group_path(group_id), _ONE, scrub, body=body, empty="", lax=True,
                                         headers=headers)
        group = ScimGroup.from_resource(data) if data.get("id") not in (None, "") else None
        return GroupUpdate(group=group)

    async def _read_modify_write(
        self,
        group_id: str,
        *,
        display_name: str | None = None,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
        members: Sequence[str] | None = None,
        display: Mapping[str, str] | None = None,
    ) -> GroupUpdate:
        """GET the group, change it, PUT it back with If-Match when the read gave a version; 412: again."""
        names = display or {}
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            current = await self.get_group(group_id)
            body = self._changed_group(current, display_name, add, remove, members, names)
            kept = [m["value"] for m in body["members"]]
            shown = [display_name, current.display_name, *(m.get("display") for m in body["members"]), *remove]
            scrub = self._scrub.with_values(identifiers=[group_id, *kept, *(n for n in shown if n)])
            condition = {"If-Match": current.etag} if self._send_if_match and current.etag else None
            try:
                return await self._write("PUT", group_id, body, scrub, headers=condition)
            except ScimPreconditionFailedError as exc:
                if attempt == WRITE_ATTEMPTS:
                    raise ScimTransientError(
                        "PUT", _ONE, 412, f"the group changed on the target between read and write "
                        f"{WRITE_ATTEMPTS} times; nothing was overwritten", version=self.version,
                        reason="precondition failed") from exc
                _log.debug("PUT %s -> 412: reading the group again (attempt %d)", _ONE, attempt)
                trace.get_current_span().add_event("412: read again and re-apply", {"scim.attempt": attempt})
        raise AssertionError("unreachable")

    def _changed_group(self, current: ScimGroup, display_name: str | None, add: Sequence[str],
                       remove: Sequence[str], members: Sequence[str] | None,
                       names: Mapping[str, str]) -> dict[str, Any]:
        kept = _member_items(_get(current.raw, "members"))
        if members is not None:
            known = {m["value"]: m for m in kept}
            kept = [known.get(m) or _member(m, names) for m in members]
        else:
            gone = set(remove)
            kept = [m for m in kept if m["value"] not in gone]
            present = {m["value"] for m in kept}
            kept += [_member(m, names) for m in add if m not in present]
        body = {k: v for k, v in current.raw.items() if k.lower() not in ("meta", "members", "id", "schemas")}
        schemas = current.raw.get("schemas")
        core = self._dialect.core_schema if self.version == "1.1" else GROUP_SCHEMA_20
        body = {"schemas": list(schemas) if isinstance(schemas, list) and schemas else [core], "id": current.id,
                **body}
        if display_name is not None:
            body["displayName"] = display_name
        body["members"] = kept
        return body

    async def _group_call(
        self,
        method: str,
        path: str,
        redacted: str,
        scrub: Scrubber,
        *,
        collection: bool = False,
        etag: bool = False,
        **kwargs: Any,
    ) -> Any:
        """``_call`` that turns "no Groups here" into :class:`ScimGroupsUnsupportedError`: 501 on any group
        request, 404 on the ``/Groups`` collection (``collection=True``; on ``/Groups/{id}`` a 404 is a missing
        group). ``etag``: return ``(status, data, etag header)`` (:meth:`_fetch`) instead of ``(status, data)``."""
        try:
            answer = await (self._fetch if etag else self._call)(method, path, redacted, scrub, **kwargs)
            writes = _WRITES.get()
            if writes is not None and method != "GET":
                writes.append((method, redacted, answer[0]))
            return answer
        except ScimTransientError as exc:
            if exc.status == 501:
                raise _unsupported(exc) from None
            raise
        except ScimNotFoundError as exc:
            if collection:
                raise _unsupported(exc) from None
            raise

    async def _probe_groups_endpoint(self) -> None:
        """After a 404 on a search: does ``/Groups`` exist at all? Raises if it does not."""
        probe = "/Groups?startIndex=1&count=1"
        await self._group_call("GET", probe, probe, self._scrub, collection=True)


async def split_until_isolated(
    op: Callable[[list[T]], Awaitable[Any]],
    members: Sequence[T],
    *,
    splittable: Callable[[ScimError], bool] | None = None,
) -> tuple[list[T], list[tuple[T, ScimError]]]:
    """Apply ``op`` to ``members``; when the target refuses the batch as a whole, bisect it until each failing
    member is alone, applying every other half that succeeds.

    ``op`` is e.g. ``lambda batch: client.add_members(gid, batch)``. Returns ``(done, failed)``: ``done`` in the
    input order, ``failed`` as ``(member, error)``. By default a 400 is splittable (servers apply a PATCH all or
    nothing, so one unknown or deleted member fails the whole request, in 1.1 as in 2.0); any other error
    (transient, auth, missing group, unsupported) propagates at once, since it would fail every half the same way.
    Add and remove are idempotent, so retrying the whole batch after such an error is safe. Cost: one request
    when all succeed, about ``2·k·log2(n)`` for ``k`` failing members out of ``n``.
    """
    is_splittable = splittable or _is_batch_refusal
    items = list(members)
    done: list[int] = []
    failed: list[tuple[int, ScimError]] = []

    async def attempt(batch: list[int]) -> None:
        try:
            await op([items[i] for i in batch])
        except ScimError as exc:
            if not is_splittable(exc):
                raise
            if len(batch) == 1:
                failed.append((batch[0], exc))
                return
            middle = len(batch) // 2
            await attempt(batch[:middle])
            await attempt(batch[middle:])
            return
        done.extend(batch)

    if items:
        await attempt(list(range(len(items))))
    return [items[i] for i in sorted(done)], [(items[i], exc) for i, exc in sorted(failed, key=lambda f: f[0])]


def _is_batch_refusal(exc: ScimError) -> bool:
    return isinstance(exc, ScimPermanentError) and exc.status == 400


def _unsupported(exc: ScimError) -> ScimGroupsUnsupportedError:
    return ScimGroupsUnsupportedError(
        exc.method, exc.path, exc.status, exc.detail, version=exc.version, scim_type=exc.scim_type,
        reason=_UNSUPPORTED,
    )


def _patch_op(*operations: Mapping[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP_20], "Operations": list(operations)}


def _group_path(group_id: str) -> str:
    return "/Groups/" + quote(group_id, safe="@")


def _get(resource: Mapping[str, Any], name: str) -> Any:
    """An attribute by name, case-insensitively (SCIM attribute names are case-insensitive)."""
    if name in resource:
        return resource[name]
    low = name.lower()
    return next((v for k, v in resource.items() if isinstance(k, str) and k.lower() == low), None)


def _groups_of(data: Mapping[str, Any]) -> list[ScimGroup]:
    resources = _get(data, "Resources") or []
    if not isinstance(resources, list):
        return []
    return [g for r in resources if isinstance(r, Mapping) and (g := ScimGroup.from_resource(r))]


def _member_items(members: Any) -> list[dict[str, Any]]:
    """Members as ``{value[, display]}`` (lax servers list bare ids)."""
    items: list[dict[str, Any]] = []
    for member in members if isinstance(members, list) else []:
        if isinstance(member, Mapping):
            value = _get(member, "value")
            if value in (None, ""):
                continue
            item: dict[str, Any] = {"value": str(value)}
            display = _get(member, "display")
            if isinstance(display, str):
                item["display"] = display
            items.append(item)
        elif isinstance(member, (str, int)) and not isinstance(member, bool):
            items.append({"value": str(member)})
    return items


def _member(member_id: str, names: Mapping[str, str]) -> dict[str, str]:
    """A member as Okta sends it: ``{value, display}``, ``display`` the member's userName when known."""
    name = names.get(member_id)
    return {"value": member_id, "display": name} if name else {"value": member_id}


def _member_ids(members: Any) -> list[str]:
    return [m["value"] for m in _member_items(members)]


def _unique(values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        raise TypeError("member_ids must be an iterable of ids, not a string")
    return list(dict.fromkeys(str(v) for v in values))


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
