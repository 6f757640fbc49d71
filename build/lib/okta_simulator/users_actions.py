"""User lifecycle as an Okta admin performs it, with the System Log events Okta writes.

Choice (documented): deactivating a user keeps its app assignments but marks the app users INACTIVE
(they come back ACTIVE when the user is active again); SSO-only apps get no provisioning events.
Reactivation puts the user in PROVISIONED (pending user action), as the Admin Console does.
"""
from __future__ import annotations

from .domain import User, new_user
from .errors import OktaError, invalid, not_found
from .events import user_target
from .passwords import hash_password
from .sim import Simulator

CREATE_STATUSES = ("STAGED", "PROVISIONED", "ACTIVE")
# action -> (allowed from-statuses, new status, event type)
TRANSITIONS = {
    "activate": (("STAGED", "PROVISIONED"), "ACTIVE", "user.lifecycle.activate"),
    "deactivate": (("STAGED", "PROVISIONED", "ACTIVE", "SUSPENDED", "LOCKED_OUT", "RECOVERY",
                    "PASSWORD_EXPIRED"), "DEPROVISIONED", "user.lifecycle.deactivate"),
    "reactivate": (("DEPROVISIONED",), "PROVISIONED", "user.lifecycle.reactivate"),
    "suspend": (("ACTIVE",), "SUSPENDED", "user.lifecycle.suspend"),
    "unsuspend": (("SUSPENDED",), "ACTIVE", "user.lifecycle.unsuspend"),
}


def get_user(sim: Simulator, user_id: str) -> User:
    user = sim.org.find_user(user_id)
    if user is None:
        raise not_found("User", user_id)
    return user


def _check_new(sim: Simulator, profile: dict, status: str) -> str:
    """The new user's login, once `status` and `profile` are acceptable."""
    if status not in CREATE_STATUSES:
        raise invalid(f"status: must be one of {CREATE_STATUSES}")
    login = profile.get("login")
    if not login:
        raise invalid("login: The field cannot be left blank")
    if sim.org.find_user(login) is not None:
        raise invalid("login: An object with this field already exists in the current organization")
    return login


def create_users(sim: Simulator, specs: list[tuple[dict, str]]) -> list[User]:
    """Many `(profile, status)` at once, each exactly as `create_user`; nothing is created unless all are valid."""
    seen: set[str] = set()
    for profile, status in specs:
        login = _check_new(sim, profile, status).lower()
        if login in seen:
            raise invalid("login: An object with this field already exists in the current organization")
        seen.add(login)
    return [create_user(sim, profile, status) for profile, status in specs]


def _hashed(password: str) -> str:
    """The stored hash of a new password; Okta's policy message when it is blank (never the password itself)."""
    try:
        return hash_password(password)
    except ValueError:
        raise invalid("password: Password requirements were not met.") from None


def create_user(sim: Simulator, profile: dict, status: str = "ACTIVE", password: str | None = None,
                token_id: str | None = None) -> User:
    """`password`: the user can sign in with it (okta_simulator.oidc) once ACTIVE."""
    login = _check_new(sim, profile, status)
    hashed = _hashed(password) if password is not None else None
    full = {"email": login, "locale": "en_US", **profile}
    full.setdefault("displayName", f"{full.get('firstName', '')} {full.get('lastName', '')}".strip())
    user = new_user(full, status, sim.now())
    if hashed is not None:
        user.password_hash, user.password_changed = hashed, user.created
    sim.org.add_user(user)
    sim.record("user.lifecycle.create", [user_target(user)], "/api/v1/users", token_id)
    if status == "ACTIVE":
        sim.record("user.lifecycle.activate", [user_target(user)], f"/api/v1/users/{user.id}/lifecycle/activate",
                   token_id)
    return user


def set_password(sim: Simulator, user_id: str, password: str, token_id: str | None = None) -> User:
    """An admin sets the user's password (Okta writes `user.account.update_password`)."""
    user = get_user(sim, user_id)
    user.password_hash = _hashed(password)
    user.password_changed = user.last_updated = sim.now()
    sim.record("user.account.update_password", [user_target(user)], f"/api/v1/users/{user.id}", token_id)
    return user


def update_profile(sim: Simulator, user_id: str, changes: dict, token_id: str | None = None) -> User:
    """Merge `changes` into the profile; a None value removes the attribute."""
    user = get_user(sim, user_id)
    old_login = user.profile.get("login", "")
    for key, value in changes.items():
        if value is None:
            user.profile.pop(key, None)
        else:
            user.profile[key] = value
    sim.org.relogin(user, old_login)
    user.last_updated = sim.now()
    sim.record("user.account.update_profile", [user_target(user)], f"/api/v1/users/{user.id}", token_id)
    return user


def update_primary_email(sim: Simulator, user_id: str, email: str, token_id: str | None = None) -> User:
    """A primary email change written as Okta's release notes describe it: `user.account.update_primary_email`
    alone (not written by profile sync or other automated processes)."""
    if not email or "@" not in email:
        raise invalid("email: must be an email address")
    user = get_user(sim, user_id)
    user.profile["email"] = email
    user.last_updated = sim.now()
    sim.record("user.account.update_primary_email", [user_target(user)], f"/api/v1/users/{user.id}", token_id)
    return user


def transition(sim: Simulator, user_id: str, action: str, token_id: str | None = None) -> User:
    if action not in TRANSITIONS:
        raise invalid(f"unknown lifecycle action {action}")
    allowed, new_status, event_type = TRANSITIONS[action]
    user = get_user(sim, user_id)
    if user.status not in allowed:
        raise OktaError(400, "E0000001", f"Api validation failed: cannot {action} a user in status {user.status}")
    now = sim.now()
    user.status, user.status_changed, user.last_updated = new_status, now, now
    if new_status == "ACTIVE" and user.activated is None:
        user.activated = now
    _sync_app_users(sim, user, now)
    sim.record(event_type, [user_target(user)], f"/api/v1/users/{user.id}/lifecycle/{action}", token_id)
    return user


def _sync_app_users(sim: Simulator, user: User, now: float) -> None:
    status = {"DEPROVISIONED": "INACTIVE", "ACTIVE": "ACTIVE"}.get(user.status)
    for au in sim.org.app_users_for_user(user.id):
        if status and au.status != status:
            au.status, au.status_changed, au.last_updated = status, now, now


def delete_user(sim: Simulator, user_id: str, token_id: str | None = None) -> None:
    """Okta deletes only deactivated users; deleting an active one deactivates it first."""
    user = get_user(sim, user_id)
    if user.status != "DEPROVISIONED":
        transition(sim, user.id, "deactivate", token_id)
    sim.record("user.lifecycle.delete.initiated", [user_target(user)], f"/api/v1/users/{user.id}", token_id)
    for au in sim.org.app_users_for_user(user.id):
        del sim.org.app_users[(au.app_id, au.user_id)]
    for group in sim.org.groups.values():
        if user.id in group.members:
            group.members.remove(user.id)
    sim.org.remove_user(user.id)
