"""The user as the SCIM target returns it, and the choice among search results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NoSafeMatch", "ScimUser", "attribute_values", "meta_version", "pick_match"]


class NoSafeMatch(ValueError):
    """The search results hold no single user that can safely be taken for the one looked up."""


@dataclass(frozen=True)
class ScimUser:
    """``active`` is None when the server did not say; ``raw`` is the resource exactly as received; ``etag`` is
    the version the target gave it (the ``ETag`` header of a read, else ``meta.version``), None when it gives none:
    sent back as ``If-Match`` on the write built from this resource (RFC 7644 §3.14)."""

    id: str
    user_name: str | None
    active: bool | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    etag: str | None = field(default=None, compare=False)

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any], fallback_id: str | None = None,
                      etag: str | None = None) -> ScimUser | None:
        """None when the resource has no id (and no fallback): the caller decides what that means."""
        raw_id = resource.get("id")
        user_id = str(raw_id) if raw_id not in (None, "") else fallback_id
        if user_id is None:
            return None
        user_name = resource.get("userName")
        return cls(
            id=user_id,
            user_name=str(user_name) if user_name is not None else None,
            active=_as_bool(resource.get("active")),
            raw=resource,
            etag=etag or meta_version(resource),
        )


def meta_version(resource: Mapping[str, Any]) -> str | None:
    """``meta.version`` (names matched case-insensitively), which RFC 7644 §3.14 makes equal to the ETag."""
    meta = next((v for k, v in resource.items() if isinstance(k, str) and k.lower() == "meta"), None)
    if not isinstance(meta, Mapping):
        return None
    version = next((v for k, v in meta.items() if isinstance(k, str) and k.lower() == "version"), None)
    return version.strip() or None if isinstance(version, str) else None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):  # seen on lax 1.1 servers
        return value.strip().lower() == "true"
    return None


def attribute_values(resource: Mapping[str, Any], path: str) -> list[str]:
    """Every string value at a dotted path; lists (multi-valued attributes) are walked, ``emails`` means values."""
    nodes: list[Any] = [resource]
    for part in path.split("."):
        step: list[Any] = []
        for node in nodes:
            for item in node if isinstance(node, list) else [node]:
                if isinstance(item, Mapping) and part in item:
                    step.append(item[part])
        nodes = step
    flat: list[str] = []
    for node in nodes:
        for item in node if isinstance(node, list) else [node]:
            if isinstance(item, Mapping):
                item = item.get("value")
            if isinstance(item, (str, int)) and not isinstance(item, bool):
                flat.append(str(item))
    return flat


def pick_match(candidates: Sequence[ScimUser], field_path: str, wanted: str) -> ScimUser | None:
    """The candidate whose ``field_path`` equals ``wanted``: exactly first, then case-insensitively.

    Raises :class:`NoSafeMatch` when none or several match, so that a server that ignores the filter and
    lists everyone never makes the bridge link (or overwrite) the wrong account.
    """
    if not candidates:
        return None
    exact = [c for c in candidates if wanted in attribute_values(c.raw, field_path)]
    if len(exact) == 1:
        return exact[0]
    folded = wanted.casefold()
    loose = [c for c in candidates if folded in {v.casefold() for v in attribute_values(c.raw, field_path)}]
    if len(loose) == 1:
        return loose[0]
    if not exact and not loose:
        if len(candidates) == 1 and not attribute_values(candidates[0].raw, field_path):
            return candidates[0]  # the server matched it but does not return the attribute
        raise NoSafeMatch(f"search returned {len(candidates)} users, none with a matching {field_path}")
    raise NoSafeMatch(f"search returned {len(loose)} users whose {field_path} matches")
