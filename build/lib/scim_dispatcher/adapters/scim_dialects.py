"""SCIM 1.1 and 2.0 as Okta's SCIM client speaks them (okta-scim-protocol.md section 2).

The bridge's attribute mapping yields a *flat* mapping of SCIM attribute paths to values; :func:`user_body`
turns it into the dialect's resource:

- ``name.givenName`` nests as ``{"name": {"givenName": …}}``;
- ``urn:…:{attr}`` (anything starting with ``urn:``) nests under the URN before the last colon and that URN is
  added to ``schemas``: ``urn:okta:jira:1.0:user:department`` -> ``{"urn:okta:jira:1.0:user": {"department": …}}``;
  a dotted attribute after the URN nests too (enterprise ``manager.value``);
- a key qualified with the core schema's URN lands at the top level;
- ``None`` values are left out (on PUT an absent attribute is cleared, which is what ``None`` means);
- 1.1 create adds ``groups: []`` as Okta does; PUT does not, so that a replace never empties memberships.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["NOT_SENT_BACK", "SCIM11", "SCIM20", "Dialect", "dialect_for", "updated_user", "user_body"]

Version = Literal["1.1", "2.0"]


@dataclass(frozen=True)
class Dialect:
    version: Version
    core_schema: str
    media_type: str
    service_provider_config_path: str
    search_404_means_none: bool
    create_adds_groups: bool

    def patch_active_body(self, user_id: str, active: bool) -> dict[str, Any]:
        if self.version == "1.1":
            return {"schemas": [self.core_schema], "id": user_id, "active": active}
        return {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": active}}],
        }


SCIM11 = Dialect(
    version="1.1",
    core_schema="urn:scim:schemas:core:1.0",
    media_type="application/json",
    service_provider_config_path="/ServiceProviderConfigs",
    search_404_means_none=False,
    create_adds_groups=True,
)
SCIM20 = Dialect(
    version="2.0",
    core_schema="urn:ietf:params:scim:schemas:core:2.0:User",
    media_type="application/scim+json",
    service_provider_config_path="/ServiceProviderConfig",
    search_404_means_none=True,
    create_adds_groups=False,
)


def dialect_for(version: str) -> Dialect:
    try:
        return {"1.1": SCIM11, "2.0": SCIM20}[version]
    except KeyError:
        raise ValueError(f"unsupported SCIM version {version!r}: expected '1.1' or '2.0'") from None


def user_body(
    dialect: Dialect, attributes: Mapping[str, Any], *, user_id: str | None = None, create: bool = False
) -> dict[str, Any]:
    schemas = [dialect.core_schema]
    core: dict[str, Any] = {}
    extensions: dict[str, dict[str, Any]] = {}
    for key, value in attributes.items():
        if value is None or key in ("schemas", "id"):
            continue
        urn, attr = _split_urn(key)
        if urn is None or urn == dialect.core_schema:
            _put(core, attr, value, key)
            continue
        if urn not in extensions:
            schemas.append(urn)
            extensions[urn] = {}
        _put(extensions[urn], attr, value, key)
    body: dict[str, Any] = {"schemas": schemas}
    if user_id is not None:
        body["id"] = user_id
    body.update(core)
    if create and dialect.create_adds_groups:
        body.setdefault("groups", [])
    body.update(extensions)
    return body


NOT_SENT_BACK = frozenset({"meta", "groups", "password"})  # lower-case names of a read resource left out of a PUT


def updated_user(dialect: Dialect, current: Mapping[str, Any], attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The resource ``current`` (as read from the target) with the managed ``attributes`` set on it, for a PUT.

    Names are matched case-insensitively (SCIM attribute names are), so a target that answers ``UserName`` gets its
    own key back, changed, never a second one beside it."""
    body: dict[str, Any] = {k: copy.deepcopy(v) for k, v in current.items()
                            if not (isinstance(k, str) and k.lower() in NOT_SENT_BACK)}
    schemas_key = _key(body, "schemas")
    raw_schemas = body.pop(schemas_key, None)
    schemas = [s for s in raw_schemas if isinstance(s, str)] if isinstance(raw_schemas, list) else []
    if not any(s.lower() == dialect.core_schema.lower() for s in schemas):
        schemas.insert(0, dialect.core_schema)
    for key, value in attributes.items():
        if key in ("schemas", "id"):
            continue
        urn, attr = _split_urn(key)
        if urn is None or urn.lower() == dialect.core_schema.lower():
            _assign(body, attr.split("."), value, key)
            continue
        urn_key = _key(body, urn)
        extension = body.get(urn_key)
        if value is None and not isinstance(extension, dict):
            continue
        if not isinstance(extension, dict):
            if urn_key in body:
                raise ValueError(f"attribute {key!r} nests under {urn!r}, which the target holds as a plain value")
            extension = body[urn_key] = {}
        _assign(extension, attr.split("."), value, key)
        if extension:
            if not any(s.lower() == urn.lower() for s in schemas):
                schemas.append(urn)
        else:  # its last attribute was cleared: the extension and its schema go
            del body[urn_key]
            schemas = [s for s in schemas if s.lower() != urn.lower()]
    id_key = _key(body, "id")
    user_id = body.pop(id_key, None)
    return {"schemas": schemas, **({"id": user_id} if user_id is not None else {}), **body}


def _key(container: Mapping[str, Any], name: str) -> str:
    """The key ``container`` holds ``name`` under, case-insensitively; ``name`` itself when it holds none."""
    if name in container:
        return name
    low = name.lower()
    return next((k for k in container if isinstance(k, str) and k.lower() == low), name)


def _assign(target: dict[str, Any], parts: list[str], value: Any, key: str) -> None:
    """Set (``None``: remove) the dotted path ``parts`` in ``target``; containers emptied by a removal go too."""
    head = _key(target, parts[0])
    if len(parts) == 1:
        if value is None:
            target.pop(head, None)
        else:
            target[head] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
        return
    child = target.get(head)
    if child is None:
        if value is None:
            return
        child = target[head] = {}
    if not isinstance(child, dict):
        if value is None:
            return
        raise ValueError(f"attribute {key!r} nests under {parts[0]!r}, which the target holds as a plain value")
    _assign(child, parts[1:], value, key)
    if not child:
        del target[head]


def _split_urn(key: str) -> tuple[str | None, str]:
    if not key.startswith("urn:"):
        return None, key
    urn, _, attr = key.rpartition(":")
    if not urn or not attr:
        raise ValueError(f"attribute {key!r} names a schema URN but no attribute after it")
    return urn, attr


def _put(target: dict[str, Any], path: str, value: Any, key: str) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"attribute {key!r} nests under {part!r}, which is already set to a plain value")
        target = child
    existing = target.get(leaf)
    if isinstance(existing, dict) and isinstance(value, Mapping):
        existing.update(value)
    elif leaf in target and isinstance(existing, dict):
        raise ValueError(f"attribute {key!r} is a plain value but sub-attributes of it are also mapped")
    else:
        target[leaf] = dict(value) if isinstance(value, Mapping) else value
