"""In-memory store shared by the SCIM 1.1 and 2.0 front ends.

Records are kept in a dialect-neutral form: the core attributes the target knows
(see ``USER_ATTRS`` / ``GROUP_ATTRS``) under their canonical names, plus any
extension namespace (a key starting with ``urn:`` whose value is an object), e.g.
``urn:okta:jira:1.0:user:custom`` (1.1) or the SCIM 2.0 enterprise extension.

Like the Jira SCIM plugin, unknown top-level attributes are *ignored* (dropped,
never stored or returned); the dropped names are reported back to the caller so
the HTTP layer can expose them (``X-Demo-Ignored-Attributes`` header).
Passwords are write-only: stored apart, never rendered by the SCIM API.
The unique attribute (userName, displayName) is indexed case-insensitively: the uniqueness check and
the `userName eq "…"` look-up Okta makes before every create cost the same at 10 or 100,000 records.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

USER = "User"
GROUP = "Group"

USER_ATTRS = (  # RFC 7643 §4.1's User, but for the read-only `groups` and the write-only `password`
    "userName", "name", "displayName", "nickName", "profileUrl", "title", "userType", "locale",
    "preferredLanguage", "timezone", "active", "emails", "phoneNumbers", "ims", "photos", "addresses",
    "entitlements", "roles", "x509Certificates", "externalId",
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
    order: int = 0  # creation order (records are listed in it)


@dataclass
class Store:
    id_equals_name: bool = False
    unique_user_names: bool = True
    records: dict[str, dict[str, Record]] = field(default_factory=lambda: {USER: {}, GROUP: {}})
    # kind -> lower-case unique value -> ids; and kind -> id -> the value it is indexed under
    _by_unique: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {USER: {}, GROUP: {}}, repr=False)
    _indexed: dict[str, dict[str, str]] = field(default_factory=lambda: {USER: {}, GROUP: {}}, repr=False)
    _order: itertools.count = field(default_factory=itertools.count, repr=False)

    def reset(self) -> None:
        for maps in (self.records, self._by_unique, self._indexed):
            for bucket in maps.values():
                bucket.clear()

    def _index(self, rec: Record) -> None:
        value = str(rec.attrs.get(UNIQUE[rec.kind], "")).lower()
        self._by_unique[rec.kind].setdefault(value, []).append(rec.id)
        self._indexed[rec.kind][rec.id] = value

    def _unindex(self, kind: str, rid: str) -> None:
        value = self._indexed[kind].pop(rid)
        ids = self._by_unique[kind][value]
        ids.remove(rid)
        if not ids:
            del self._by_unique[kind][value]

    def find(self, kind: str, unique_value: str) -> list[Record]:
        """Records whose unique attribute equals `unique_value` case-insensitively, in creation order."""
        ids = self._by_unique[kind].get(unique_value.lower(), ())
        return sorted((self.records[kind][i] for i in ids), key=lambda rec: rec.order)

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
        for other in self._by_unique[kind].get(value.lower(), ()) if kind != USER or self.unique_user_names else ():
            if other != rid:
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
        rec = Record(rid, kind, attrs, ts, ts, 1, password, next(self._order))
        self.records[kind][rid] = rec
        self._index(rec)
        return rec

    def replace(self, kind: str, rid: str, attrs: dict, password: str | None = None) -> Record:
        rec = self.require(kind, rid)
        self._check(kind, attrs, rid)
        self._unindex(kind, rid)
        rec.attrs = attrs
        self._index(rec)
        if password is not None:
            rec.password = password
        rec.version += 1
        rec.last_modified = now_iso()
        return rec

    def delete(self, kind: str, rid: str) -> None:
        self.require(kind, rid)
        del self.records[kind][rid]
        self._unindex(kind, rid)
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
