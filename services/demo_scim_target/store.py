"""In-memory store shared by the SCIM 1.1 and 2.0 front ends.

Records are kept in a dialect-neutral form: the core attributes the target knows
(see ``USER_ATTRS`` / ``GROUP_ATTRS``) under their canonical names, plus any
extension namespace (a key starting with ``urn:`` whose value is an object), e.g.
``urn:okta:jira:1.0:user:custom`` (1.1) or the SCIM 2.0 enterprise extension.

Like the Jira SCIM plugin, unknown top-level attributes are *ignored* (dropped,
never stored or returned); the dropped names are reported back to the caller so
the HTTP layer can expose them (``X-Demo-Ignored-Attributes`` header).
Passwords are write-only: stored apart, never rendered by the SCIM API.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

USER = "User"
GROUP = "Group"

USER_ATTRS = (
    "userName", "name", "displayName", "nickName", "title", "userType", "locale",
    "preferredLanguage", "timezone", "active", "emails", "phoneNumbers", "externalId",
)
GROUP_ATTRS = ("displayName", "members", "externalId")
KNOWN = {USER: USER_ATTRS, GROUP: GROUP_ATTRS}
# attributes silently accepted but never stored (read-only / computed / envelope)
ENVELOPE = {"schemas", "id", "meta", "groups", "password"}
UNIQUE = {USER: "userName", GROUP: "displayName"}


class StoreError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical_name(kind: str, key: str) -> str | None:
    low = key.lower()
    for name in KNOWN[kind]:
        if name.lower() == low:
            return name
    return None


def clean(kind: str, body: dict) -> tuple[dict, str | None, list[str]]:
    """Split an incoming body into (stored attributes, password, ignored names)."""
    attrs: dict = {}
    password = None
    ignored: list[str] = []
    for key, value in body.items():
        if key.lower() == "password":
            password = value if isinstance(value, str) else None
            continue
        if key.lower() in ENVELOPE:
            continue
        if key.startswith("urn:") and isinstance(value, dict):
            if value:
                attrs[key] = copy.deepcopy(value)
            continue
        name = canonical_name(kind, key)
        if name is None:
            ignored.append(key)
            continue
        if value is None or value == [] or value == {}:
            continue
        if name == "active" and isinstance(value, str):
            value = value.strip().lower() == "true"
        attrs[name] = copy.deepcopy(value)
    return attrs, password, ignored


@dataclass
class Record:
    id: str
    kind: str
    attrs: dict
    created: str
    last_modified: str
    version: int = 1
    password: str | None = None


@dataclass
class Store:
    id_equals_name: bool = False
    unique_user_names: bool = True
    records: dict[str, dict[str, Record]] = field(default_factory=lambda: {USER: {}, GROUP: {}})

    def reset(self) -> None:
        for bucket in self.records.values():
            bucket.clear()

    def list(self, kind: str) -> list[Record]:
        return list(self.records[kind].values())  # insertion order = stable order

    def get(self, kind: str, rid: str) -> Record | None:
        return self.records[kind].get(rid)

    def require(self, kind: str, rid: str) -> Record:
        rec = self.get(kind, rid)
        if rec is None:
            raise StoreError(404, f"{kind} {rid} not found")
        return rec

    def _check(self, kind: str, attrs: dict, rid: str | None) -> None:
        key = UNIQUE[kind]
        value = attrs.get(key)
        if not isinstance(value, str) or not value.strip():
            raise StoreError(400, f"Attribute '{key}' is required", "invalidValue")
        for other in self.records[kind].values() if kind != USER or self.unique_user_names else ():
            if other.id != rid and str(other.attrs.get(key, "")).lower() == value.lower():
                raise StoreError(409, f"{kind} with {key} '{value}' already exists", "uniqueness")
        if kind == GROUP:
            for member in attrs.get("members") or []:
                mid = member.get("value") if isinstance(member, dict) else None
                if mid is None or not (mid in self.records[USER] or mid in self.records[GROUP]):
                    raise StoreError(400, f"Member '{mid}' does not exist", "invalidValue")

    def create(self, kind: str, attrs: dict, password: str | None = None) -> Record:
        self._check(kind, attrs, None)
        rid = attrs[UNIQUE[kind]] if self.id_equals_name else uuid.uuid4().hex
        if rid in self.records[kind]:
            raise StoreError(409, f"{kind} id '{rid}' already exists", "uniqueness")
        ts = now_iso()
        rec = Record(rid, kind, attrs, ts, ts, 1, password)
        self.records[kind][rid] = rec
        return rec

    def replace(self, kind: str, rid: str, attrs: dict, password: str | None = None) -> Record:
        rec = self.require(kind, rid)
        self._check(kind, attrs, rid)
        rec.attrs = attrs
        if password is not None:
            rec.password = password
        rec.version += 1
        rec.last_modified = now_iso()
        return rec

    def delete(self, kind: str, rid: str) -> None:
        self.require(kind, rid)
        del self.records[kind][rid]
        for group in self.records[GROUP].values():  # drop dangling memberships
            members = group.attrs.get("members")
            if members:
                kept = [m for m in members if m.get("value") != rid]
                if len(kept) != len(members):
                    group.attrs["members"] = kept
                    if not kept:
                        del group.attrs["members"]

    def groups_of(self, user_id: str) -> list[Record]:
        return [g for g in self.records[GROUP].values()
                if any(m.get("value") == user_id for m in g.attrs.get("members") or [])]
