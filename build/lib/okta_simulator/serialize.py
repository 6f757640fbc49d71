"""JSON shapes of the spec's User, Application, AppUser and Group."""
from __future__ import annotations

from .domain import App, AppUser, Group, User
from .ids import iso


def _ts(value: float | None) -> str | None:
    return iso(value) if value is not None else None


def user_json(user: User, base: str) -> dict:
    href = f"{base}/api/v1/users/{user.id}"
    return {
        "id": user.id,
        "status": user.status,
        "created": iso(user.created),
        "activated": _ts(user.activated),
        "statusChanged": _ts(user.status_changed),
        "lastLogin": _ts(user.last_login),
        "lastUpdated": iso(user.last_updated),
        "passwordChanged": _ts(user.password_changed),
        "type": {"id": "oty00000000000000000"},
        "profile": dict(user.profile),
        "credentials": {**({"password": {}} if user.password_hash else {}),  # Okta shows that one is set, no more
                        "provider": {"type": "OKTA", "name": "OKTA"}},
        "_links": {"self": {"href": href}},
    }


def app_json(app: App, base: str) -> dict:
    href = f"{base}/api/v1/apps/{app.id}"
    return {
        "id": app.id,
        "name": app.name,
        "label": app.label,
        "status": app.status,
        "created": iso(app.created),
        "lastUpdated": iso(app.last_updated),
        "signOnMode": "BOOKMARK",
        "accessibility": {"selfService": False},
        "visibility": {"autoSubmitToolbar": False, "hide": {"iOS": False, "web": False},
                       "appLinks": {app.name + "_link": True}},
        "features": [],
        "credentials": {"userNameTemplate": {"template": "${source.login}", "type": "BUILT_IN"}, "signing": {}},
        "settings": {"app": {"requestIntegration": False, "url": f"https://{app.name}.example.com/"}},
        "_links": {"self": {"href": href}, "users": {"href": f"{href}/users"}, "groups": {"href": f"{href}/groups"}},
    }


def app_user_json(au: AppUser, base: str, embedded_user: dict | None = None) -> dict:
    body = {
        "id": au.user_id,
        "scope": au.scope,
        "status": au.status,
        "created": iso(au.created),
        "lastUpdated": iso(au.last_updated),
        "statusChanged": iso(au.status_changed),
        "passwordChanged": None,
        "syncState": "DISABLED",
        "credentials": {"userName": au.user_name},
        "profile": dict(au.profile),
        "_links": {"app": {"href": f"{base}/api/v1/apps/{au.app_id}"},
                   "user": {"href": f"{base}/api/v1/users/{au.user_id}"}},
    }
    if embedded_user is not None:
        body["_embedded"] = {"user": embedded_user}
    return body


def group_json(group: Group, base: str) -> dict:
    href = f"{base}/api/v1/groups/{group.id}"
    return {
        "id": group.id,
        "created": iso(group.created),
        "lastUpdated": iso(group.last_updated),
        "lastMembershipUpdated": _ts(group.last_membership_updated) or iso(group.created),
        "objectClass": ["okta:user_group"],
        "type": "OKTA_GROUP",
        "profile": {"name": group.name, "description": group.description},
        "_links": {"self": {"href": href}, "users": {"href": f"{href}/users"}, "apps": {"href": f"{href}/apps"}},
    }
