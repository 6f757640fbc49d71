"""Which System Log events mean work, and how a raw event becomes an ``OktaEventReceived``.

Event types that mean work (brief, section 3): app-user membership and user events for provisioning, group events
for pushed groups. Group assignment to an app needs no event of its own: Okta writes an app-user membership event
per member.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from okta_bridge.contracts import EventTarget, OktaEventReceived

__all__ = ["GROUP_EVENTS", "GROUP_MEMBER_EVENTS", "MEMBERSHIP_EVENTS", "group_id_of", "USER_EVENTS", "MalformedEvent", "parse_event", "target_id", "user_id_of"]

MEMBERSHIP_EVENTS = frozenset({
    "application.user_membership.add",
    "application.user_membership.remove",
    "application.user_membership.update",
    "application.user_membership.change_username",
})
USER_EVENTS = frozenset({
    "user.lifecycle.create",
    "user.lifecycle.activate",
    "user.lifecycle.reactivate",
    "user.lifecycle.deactivate",
    "user.lifecycle.suspend",
    "user.lifecycle.unsuspend",
    "user.lifecycle.delete.initiated",
    "user.account.update_profile",
})

GROUP_MEMBER_EVENTS = frozenset({"group.user_membership.add", "group.user_membership.remove"})
GROUP_EVENTS = GROUP_MEMBER_EVENTS | {"group.profile.update", "group.lifecycle.create", "group.lifecycle.delete"}


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


def target_id(event: OktaEventReceived, kind: str) -> str | None:
    return next((t.id for t in event.targets if t.type == kind), None)


def user_id_of(event: OktaEventReceived) -> str | None:
    return target_id(event, "User")


def group_id_of(event: OktaEventReceived) -> str | None:
    return target_id(event, "UserGroup")
