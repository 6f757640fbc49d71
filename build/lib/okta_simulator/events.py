"""LogEvent builders: the shapes real Okta writes (see tests/fixtures/okta/SOURCES.md).

Target order per event type (as in the public samples):
  application.user_membership.*        AppUser (0ua…), AppInstance (0oa…), User (00u…)
  directory.app_user_profile.update    the same three (no public sample found: our guess)
  user.lifecycle.*, user.account.*     User
  group.user_membership.add/remove     User, UserGroup
  group.lifecycle.*, group.profile.*   UserGroup
  group.application_assignment.*       AppInstance, UserGroup   (derived, no public sample found)
  application.provision.group_push.*   AppInstance, UserGroup (the source group), GroupPushMapping (gPm…)
                                       (derived from the Okta Workflows "Group Push Failed" card, which names
                                       these three objects; the type string "GroupPushMapping" is our guess)
Group push event names are ODD's (`event-types` legacy table): only `.mapping.created` has `mapping` in it.
"""
from __future__ import annotations

import uuid

from .domain import App, AppUser, Group, PushMapping, User
from .ids import iso, transaction_id

# eventType -> (displayMessage, legacyEventType)
EVENT_META: dict[str, tuple[str, str | None]] = {
    "application.user_membership.add": ("Add user to application membership", "app.generic.provision.assign_user_to_app"),
    "application.user_membership.remove": ("Remove user from application membership", "app.generic.unprovision.unassign_user_from_app"),
    "application.user_membership.update": ("Update user's application membership", None),
    "application.user_membership.change_username": ("Change user's application username", None),
    "application.user_membership.restore": ("Restore user assignment to an application",
                                            "app.generic.reversibility.individual.app.recovery"),
    "directory.app_user_profile.update": ("Update app user profile", None),
    "application.lifecycle.create": ("Create application", "app.generic.config.app_created"),
    "user.lifecycle.create": ("Create Okta user", "core.user.config.user_creation.success"),
    "user.lifecycle.activate": ("Activate Okta user", "core.user.config.user_activated"),
    "user.lifecycle.deactivate": ("Deactivate Okta User", "core.user.config.user_deactivated"),
    "user.lifecycle.reactivate": ("Reactivate Okta user", "core.user.config.user_reactivated"),
    "user.lifecycle.suspend": ("Suspend Okta user", "core.user.config.user_status.suspended"),
    "user.lifecycle.unsuspend": ("Unsuspend Okta user", "core.user.config.user_status.unsuspended"),
    "user.account.update_password": ("Update password for user", "core.user.config.password_update.success"),
    "user.lifecycle.delete.initiated": ("Delete Okta user", None),
    "user.account.update_profile": ("Update user profile for Okta", "core.user.config.profile_update.success"),
    "user.account.update_primary_email": ("Update primary email address", None),
    "group.user_membership.add": ("Add user to group membership", "core.user_group_member.user_add"),
    "group.user_membership.remove": ("Remove user from group membership", "core.user_group_member.user_remove"),
    "group.profile.update": ("Update group profile", None),
    "group.lifecycle.create": ("Create Okta group", None),
    "group.lifecycle.delete": ("Delete Okta group", None),
    "group.application_assignment.add": ("Add application assignment to group", None),
    "group.application_assignment.remove": ("Remove application assignment from group", None),
    "application.provision.group_push.mapping.created": ("Create group push mapping", "app.user_management.grouppush.mapping.created"),
    "application.provision.group_push.activate_mapping": ("Activate group push mapping", None),
    "application.provision.group_push.deactivate_mapping": ("Deactivate group push mapping", None),
    "application.provision.group_push.pushed": ("Push group to application", "app.user_management.grouppush.pushed"),
    "application.provision.group_push.updated": ("Update pushed group in application", "app.user_management.grouppush.updated"),
    "application.provision.group_push.removed": ("Remove group push mapping", "app.user_management.grouppush.removed"),
}


def _target(id_: str, type_: str, alternate_id: str, display_name: str) -> dict:
    return {"id": id_, "type": type_, "alternateId": alternate_id, "displayName": display_name, "detailEntry": None}


def user_target(user: User) -> dict:
    return _target(user.id, "User", user.profile.get("login", ""), user.display_name)


def app_target(app: App) -> dict:
    return _target(app.id, "AppInstance", app.label, app.label)


def app_user_target(au: AppUser, user: User) -> dict:
    return _target(au.id, "AppUser", au.user_name, user.display_name)


def group_target(group: Group) -> dict:
    return _target(group.id, "UserGroup", "unknown", group.name)


def push_mapping_target(mapping: PushMapping, group: Group) -> dict:
    return _target(mapping.id, "GroupPushMapping", mapping.target_group_id, group.name)


def actor_of(user: User) -> dict:
    return {"id": user.id, "type": "User", "alternateId": user.profile.get("login", ""),
            "displayName": user.display_name, "detailEntry": None}


def _client(api: bool) -> dict:
    agent = "python-httpx/0.28.1" if api else "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    return {
        "userAgent": {"rawUserAgent": agent, "os": "Unknown" if api else "Linux", "browser": "UNKNOWN" if api else "FIREFOX"},
        "zone": "null", "device": "Unknown" if api else "Computer", "id": None, "ipAddress": "127.0.0.1",
        "geographicalContext": {"city": None, "state": None, "country": None, "postalCode": None, "geolocation": None},
    }


def _without_nulls(value):
    """Real Okta sends many `null`s; the spec marks those fields non-nullable, so we omit them instead."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def build_event(event_type: str, actor: dict, targets: list[dict], published: float,
                request_uri: str, token_id: str | None = None) -> dict:
    """One LogEvent; `token_id` set means the change came through an SSWS token."""
    message, legacy = EVENT_META[event_type]
    txn = transaction_id()
    return _without_nulls({
        "actor": actor,
        "client": _client(api=token_id is not None),
        "authenticationContext": {"authenticationProvider": None, "credentialProvider": None, "credentialType": None,
                                  "issuer": None, "interface": None, "authenticationStep": 0,
                                  "externalSessionId": "unknown" if token_id else "102" + txn[:22]},
        "displayMessage": message,
        "eventType": event_type,
        "outcome": {"result": "SUCCESS", "reason": None},
        "published": iso(published),
        "securityContext": {"asNumber": None, "asOrg": None, "isp": None, "domain": None, "isProxy": None},
        "severity": "INFO",
        "debugContext": {"debugData": {"requestId": txn, "requestUri": request_uri, "url": request_uri + "?"}},
        "legacyEventType": legacy,
        "transaction": {"type": "WEB", "id": txn, "detail": {"requestApiTokenId": token_id} if token_id else {}},
        "uuid": str(uuid.uuid4()),
        "version": "0",
        "request": {"ipChain": [{"ip": "127.0.0.1", "geographicalContext": None, "version": "V4", "source": None}]},
        "target": targets,
    })
