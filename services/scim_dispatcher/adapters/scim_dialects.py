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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["SCIM11", "SCIM20", "Dialect", "dialect_for", "user_body"]

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
