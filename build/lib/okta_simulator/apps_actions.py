"""Apps and app assignments (app users), with the `application.user_membership.*` events Okta writes.

Targets of membership events, in order: AppUser (0ua…, alternateId = app username), AppInstance, User.
"""
from __future__ import annotations

from .domain import App, AppUser, new_app_user
from .errors import invalid, not_found
from .events import app_target, app_user_target, user_target
from .ids import okta_id
from .sim import Simulator
from .users_actions import get_user


def get_app(sim: Simulator, app_id: str) -> App:
    app = sim.org.apps.get(app_id)
    if app is None:
        raise not_found("AppInstance", app_id)
    return app


def get_app_user(sim: Simulator, app_id: str, user_id: str) -> AppUser:
    get_app(sim, app_id)
    au = sim.org.app_users.get((app_id, user_id))
    if au is None:
        raise not_found("AppUser", user_id)
    return au


def create_app(sim: Simulator, label: str, name: str | None = None, app_id: str | None = None,
               provisioning: bool = False) -> App:
    """`provisioning`: Okta provisions the app itself (then it has group push mappings); off = SSO only."""
    now = sim.now()
    app = App(app_id or okta_id("0oa"), name or label.lower().replace(" ", "_"), label, now, now,
              provisioning=provisioning)
    sim.org.apps[app.id] = app
    sim.record("application.lifecycle.create", [app_target(app)], "/api/v1/apps")
    return app


def membership_event(sim: Simulator, event_type: str, au: AppUser, token_id: str | None = None) -> None:
    app, user = sim.org.apps[au.app_id], sim.org.users[au.user_id]
    uri = f"/api/v1/apps/{app.id}/users/{user.id}"
    sim.record(event_type, [app_user_target(au, user), app_target(app), user_target(user)], uri, token_id)


def assign_user(sim: Simulator, app_id: str, user_id: str, user_name: str | None = None,
                profile: dict | None = None, scope: str = "USER", token_id: str | None = None) -> AppUser:
    app, user = get_app(sim, app_id), get_user(sim, user_id)
    existing = sim.org.app_users.get((app.id, user.id))
    if existing is not None:
        if scope == "USER":
            existing.scope = "USER"
        return existing
    au = new_app_user(app.id, user, user_name or user.profile["login"], scope, sim.now())
    au.profile = dict(profile or {})
    if user.status == "DEPROVISIONED":
        au.status = "INACTIVE"
    sim.org.app_users[(app.id, user.id)] = au
    membership_event(sim, "application.user_membership.add", au, token_id)
    return au


def assign_users(sim: Simulator, app_id: str, user_ids: list[str]) -> int:
    """`assign_user` for each id in turn (each writes its own events); nothing is assigned unless the app and every
    user exist. Returns how many assignments were made (an existing one is kept as is, as `assign_user` does)."""
    app = get_app(sim, app_id)
    users = [get_user(sim, user_id) for user_id in user_ids]
    made = 0
    for user in users:
        made += (app.id, user.id) not in sim.org.app_users
        assign_user(sim, app.id, user.id)
    return made


def unassign_user(sim: Simulator, app_id: str, user_id: str, token_id: str | None = None) -> None:
    """A user still covered by an assigned group keeps a GROUP-scoped assignment (no event)."""
    au = get_app_user(sim, app_id, user_id)
    if au.group_ids:
        au.scope = "GROUP"
        return
    membership_event(sim, "application.user_membership.remove", au, token_id)
    del sim.org.app_users[(au.app_id, au.user_id)]


def change_username(sim: Simulator, app_id: str, user_id: str, user_name: str,
                    token_id: str | None = None) -> AppUser:
    au = get_app_user(sim, app_id, user_id)
    au.user_name, au.last_updated = user_name, sim.now()
    membership_event(sim, "application.user_membership.change_username", au, token_id)
    return au


APP_USER_PROFILE_EVENTS = ("application.user_membership.update", "directory.app_user_profile.update")


def update_app_user_profile(sim: Simulator, app_id: str, user_id: str, profile: dict,
                            token_id: str | None = None,
                            event_type: str = "application.user_membership.update") -> AppUser:
    """`event_type`: the API's update writes `application.user_membership.update`; Okta also has
    `directory.app_user_profile.update` (Universal Directory), whose writer is not documented: tests choose it."""
    if event_type not in APP_USER_PROFILE_EVENTS:
        raise invalid(f"event_type: must be one of {APP_USER_PROFILE_EVENTS}")
    au = get_app_user(sim, app_id, user_id)
    au.profile.update(profile)
    au.last_updated = sim.now()
    membership_event(sim, event_type, au, token_id)
    return au


def restore_assignment(sim: Simulator, app_id: str, user_id: str) -> AppUser:
    """Writes `application.user_membership.restore` ("Restore user assignment to an application") for an existing
    assignment and changes nothing: when Okta writes it is not documented, so the bridge must only look again."""
    au = get_app_user(sim, app_id, user_id)
    membership_event(sim, "application.user_membership.restore", au)
    return au
