"""The org's objects: users, apps, app users (assignments) and groups, held in memory."""
from __future__ import annotations

from dataclasses import dataclass, field

from .ids import okta_id


@dataclass
class User:
    id: str
    status: str
    profile: dict
    created: float
    last_updated: float
    status_changed: float | None = None
    activated: float | None = None
    password_hash: str | None = field(default=None, repr=False)  # okta_simulator.passwords; never rendered
    password_changed: float | None = None
    last_login: float | None = None

    @property
    def display_name(self) -> str:
        p = self.profile
        return p.get("displayName") or f"{p.get('firstName', '')} {p.get('lastName', '')}".strip()


@dataclass
class App:
    id: str
    name: str
    label: str
    created: float
    last_updated: float
    status: str = "ACTIVE"
    provisioning: bool = False  # Okta provisions the app itself (push mappings exist only then)


@dataclass
class AppUser:
    """An assignment. `id` is the `0ua…` id the System Log names; the API shows the user id instead."""

    id: str
    app_id: str
    user_id: str
    user_name: str
    scope: str
    status: str
    profile: dict
    created: float
    last_updated: float
    status_changed: float
    group_ids: set[str] = field(default_factory=set)


@dataclass
class Group:
    id: str
    name: str
    description: str
    created: float
    last_updated: float
    members: list[str] = field(default_factory=list)
    last_membership_updated: float | None = None


@dataclass
class PushMapping:
    """Okta's own group push: `source_group_id` (an Okta group) pushed to `target_group_id`, a group in the app."""

    id: str
    app_id: str
    source_group_id: str
    target_group_id: str
    status: str
    created: float
    last_updated: float
    last_push: float | None = None


@dataclass
class Org:
    users: dict[str, User] = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)
    app_users: dict[tuple[str, str], AppUser] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    app_groups: dict[str, list[str]] = field(default_factory=dict)
    push_mappings: dict[str, PushMapping] = field(default_factory=dict)
    target_groups: dict[str, dict[str, str]] = field(default_factory=dict)  # app id -> {group id in app: name}
    logins: dict[str, str] = field(default_factory=dict)  # lower-case login -> user id (add/remove/relogin keep it)

    def add_user(self, user: User) -> None:
        self.users[user.id] = user
        self.logins[user.profile.get("login", "").lower()] = user.id

    def remove_user(self, user_id: str) -> None:
        user = self.users.pop(user_id)
        self.logins.pop(user.profile.get("login", "").lower(), None)

    def relogin(self, user: User, old_login: str) -> None:
        """After `user.profile["login"]` changed from `old_login`."""
        if self.logins.get(old_login.lower()) == user.id:
            del self.logins[old_login.lower()]
        self.logins[user.profile.get("login", "").lower()] = user.id

    def find_user(self, id_or_login: str) -> User | None:
        """By id, login (case-insensitive, through the index) or short login (the part before `@`: a scan)."""
        if id_or_login in self.users:
            return self.users[id_or_login]
        low = id_or_login.lower()
        user = self.users.get(self.logins.get(low, ""))
        if user is not None or "@" in low:
            return user
        for user in self.users.values():
            if user.profile.get("login", "").lower().split("@")[0] == low:
                return user
        return None

    def app_users_of(self, app_id: str) -> list[AppUser]:
        return [au for (a, _), au in self.app_users.items() if a == app_id]

    def app_users_for_user(self, user_id: str) -> list[AppUser]:
        return [au for (_, u), au in self.app_users.items() if u == user_id]

    def groups_of_app(self, app_id: str) -> list[Group]:
        return [self.groups[g] for g in self.app_groups.get(app_id, []) if g in self.groups]


def new_user(profile: dict, status: str, now: float) -> User:
    user = User(okta_id("00u"), status, dict(profile), now, now, now if status != "STAGED" else None)
    if status == "ACTIVE":
        user.activated = now
    return user


def new_app_user(app_id: str, user: User, user_name: str, scope: str, now: float) -> AppUser:
    return AppUser(okta_id("0ua"), app_id, user.id, user_name, scope, "ACTIVE", {}, now, now, now)
