"""Which System Log events mean work, and how a raw event becomes an ``OktaEventReceived``.

Event types that mean work (brief, section 3): app-user membership and user events for provisioning, group events
for pushed groups. Group assignment to an app needs no event of its own: Okta writes an app-user membership event
per member. Every event means "look at these keys again"; the state comes from Okta, never from the event.

Beyond the brief's list (issue 9, item 6):

* ``application.user_membership.restore`` ("Restore user assignment to an application" in Okta's event catalog;
  legacy ``app.generic.reversibility.*.app.recovery``). When Okta writes it is not documented, so it changes
  nothing in the assignment table: the (app, user) key is planned again from what is known.
* ``user.account.update_primary_email``: Okta's release notes say it is written only when a user's primary email
  is updated; ``profile.email`` is the source of the default ``emails`` mapping, so the user is read by id as for
  any change of the user.
* ``directory.app_user_profile.update`` ("app user profile" updated, Universal Directory): the app-user profile is
  what ``appProfile.*`` mappings read, so it is an app-user profile change like
  ``application.user_membership.update``. Its targets are not documented: an event that does not name a configured
  app and a user is not ours (never dead-lettered for that).

``HANDLED_EVENT_TYPES`` is the one list of every type the bridge acts on: the poller's System Log ``filter`` is built
from it, so a type added here is both asked for and handled.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from okta_bridge.contracts import EventTarget, OktaEventReceived

__all__ = ["APP_PROFILE_EVENTS", "APP_USER_EVENTS", "GROUP_EVENTS", "GROUP_MEMBER_EVENTS", "HANDLED_EVENT_TYPES",
           "MEMBERSHIP_EVENTS", "group_id_of", "USER_EVENTS", "MalformedEvent", "parse_event", "target_id",
           "user_id_of"]

MEMBERSHIP_EVENTS = frozenset({  # AppUser, AppInstance and User targets, as in Okta's samples: required
    "application.user_membership.add",
    "application.user_membership.remove",
    "application.user_membership.update",
    "application.user_membership.change_username",
    "application.user_membership.restore",
})
# the app user's profile changed: the appProfile.* values are read again (once per key, the apps bucket)
APP_PROFILE_EVENTS = frozenset({"application.user_membership.update", "directory.app_user_profile.update"})
APP_USER_EVENTS = MEMBERSHIP_EVENTS | APP_PROFILE_EVENTS  # name one (app, user) key by their AppInstance and User
USER_EVENTS = frozenset({
    "user.lifecycle.create",
    "user.lifecycle.activate",
    "user.lifecycle.reactivate",
    "user.lifecycle.deactivate",
    "user.lifecycle.suspend",
    "user.lifecycle.unsuspend",
    "user.lifecycle.delete.initiated",
    "user.account.update_profile",
    "user.account.update_primary_email",
})

GROUP_MEMBER_EVENTS = frozenset({"group.user_membership.add", "group.user_membership.remove"})
GROUP_EVENTS = GROUP_MEMBER_EVENTS | {"group.profile.update", "group.lifecycle.create", "group.lifecycle.delete"}

HANDLED_EVENT_TYPES: tuple[str, ...] = tuple(sorted(APP_USER_EVENTS | USER_EVENTS | GROUP_EVENTS))


class MalformedEvent(ValueError):
    """A log event that cannot be read; it is dead-lettered with this reason, never dropped silently."""


def parse_event(org: str, raw: Any) -> OktaEventReceived:
    if not isinstance(raw, dict):
        raise MalformedEvent("event is not a JSON object")
    for field in ("uuid", "eventType", "published"):
        if not raw.get(field):
            raise MalformedEvent(f"event has no {field}")
    if not isinstance(raw["uuid"], str):  # the dedupe key and the audit's event id: never anything else
        raise MalformedEvent(f"event uuid is not a string ({type(raw['uuid']).__name__})")
    try:
        targets = tuple(
            EventTarget(id=t["id"], type=t["type"], alternate_id=t.get("alternateId"), display_name=t.get("displayName"))
            for t in raw.get("target") or ()
        )
        transaction = raw.get("transaction") or {}
        detail = transaction.get("detail") or {}
        event = OktaEventReceived(
            org=org, event_uuid=raw["uuid"], event_type=raw["eventType"], published=raw["published"],
            transaction_id=transaction.get("id"), request_api_token_id=detail.get("requestApiTokenId"),
            actor_id=_app_actor(raw.get("actor")),
            targets=targets,
        )
    except (AttributeError, KeyError, TypeError, ValidationError) as exc:  # e.g. transaction not an object
        raise MalformedEvent(f"event {raw.get('uuid')}: unreadable targets or fields ({type(exc).__name__})") from None
    if event.event_type in MEMBERSHIP_EVENTS:
        kinds = {t.type for t in targets}
        if not {"AppInstance", "User"} <= kinds:
            raise MalformedEvent(f"event {event.event_uuid}: {event.event_type} without AppInstance and User targets")
    if event.event_type in GROUP_EVENTS and not group_id_of(event):
        raise MalformedEvent(f"event {event.event_uuid}: {event.event_type} without a UserGroup target")
    if event.event_type in GROUP_MEMBER_EVENTS and not user_id_of(event):
        raise MalformedEvent(f"event {event.event_uuid}: {event.event_type} without a User target")
    if event.event_type in USER_EVENTS and not user_id_of(event):
        raise MalformedEvent(f"event {event.event_uuid}: {event.event_type} without a User target")
    return event


def _app_actor(actor: Any) -> str | None:
    """The actor's id when it is not a person (an OAuth 2.0 service app: how the bridge knows its own writes);
    a person's id is not carried."""
    if isinstance(actor, dict) and actor.get("type") != "User" and isinstance(actor.get("id"), str):
        return actor["id"]
    return None


def target_id(event: OktaEventReceived, kind: str) -> str | None:
    return next((t.id for t in event.targets if t.type == kind), None)


def user_id_of(event: OktaEventReceived) -> str | None:
    return target_id(event, "User")


def group_id_of(event: OktaEventReceived) -> str | None:
    return target_id(event, "UserGroup")
