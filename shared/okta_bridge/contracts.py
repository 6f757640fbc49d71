"""Every message that crosses RabbitMQ, defined once.

Frozen pydantic v2 models with ``extra="forbid"`` and a ``schema_version``. Who publishes and who consumes each one
is in :mod:`okta_bridge.topology`.

    OktaEventReceived     queue-poller  -> translator       one relevant System Log event
    AppSyncRequested      queue-poller  -> translator       a full sync of one app (initial, new app, cursor lost)
    ScimOperationPlanned  translator    -> scim-dispatcher  the desired target state of one (app, user), versioned
    TargetValuesObserved  scim-dispatcher -> translator     values the target returned that differ from Okta's
                                                            (``accept_user_updates``: written to the app user)
    GroupPlanned          translator    -> scim-dispatcher  push / unlink / delete one (app, group), versioned
    MembershipPlanned     translator    -> scim-dispatcher  "look at these members of (app, group) again"; the
                          scim-dispatcher -> itself         desired state and its version are read when applied
    AuditBatch            every service -> audit-recorder   the steps of one batch of work, each its own record
                                                            (AuditRecorded: one step of one change)
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, ValidationInfo, model_validator

__all__ = [
    "AppSyncRequested",
    "AuditBatch",
    "AuditRecorded",
    "AuditStep",
    "Reason",
    "EventTarget",
    "GroupAction",
    "GroupPlanned",
    "MembershipPlanned",
    "MappedAttribute",
    "OKTA_ID_PATTERN",
    "OktaEventReceived",
    "OktaId",
    "is_okta_id",
    "PlanAction",
    "ScimOperationPlanned",
    "SyncReason",
    "TargetValuesObserved",
]


OKTA_ID_PATTERN = r"^[0-9A-Za-z]{20}$"
_OKTA_ID = re.compile(OKTA_ID_PATTERN)
ID_TARGET_TYPES = frozenset({"User", "AppInstance", "AppUser", "UserGroup"})  # event targets whose id is used


def _okta_id(value: str) -> str:
    """Okta's ids are 20 letters and digits, a 3-character type prefix first (``00u`` user, ``0oa`` app, ``00g``
    group, ``0ua`` app user), as every id of Okta's Management API spec and the simulator's are. The error names
    neither the value nor the message: a forged id may carry anything."""
    if not _OKTA_ID.fullmatch(value):
        raise ValueError("not an Okta id (20 letters and digits: 00u… a user, 0oa… an app, 00g… a group)")
    return value


def is_okta_id(value: object) -> bool:
    return isinstance(value, str) and bool(_OKTA_ID.fullmatch(value))


OktaId = Annotated[str, AfterValidator(_okta_id), Field(json_schema_extra={"pattern": OKTA_ID_PATTERN})]
"""An Okta id, checked wherever one enters the bridge (messages, the connectors file, the CLI, the audit API):
ids go into Okta URL paths (``/api/v1/apps/{app}/users/{user}``), so ``../../users/00u…`` must never pass."""


class _Contract(BaseModel):
    # a refused message's error never quotes its values: they may be a person's (or anything, when forged)
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class EventTarget(_Contract):
    """One entry of a log event's ``target[]`` (types seen: User, AppInstance, AppUser, UserGroup)."""

    id: str
    type: str
    alternate_id: str | None = None
    display_name: str | None = None

    @model_validator(mode="after")
    def _id_of_known_type(self) -> "EventTarget":
        if self.type in ID_TARGET_TYPES:
            _okta_id(self.id)
        return self


class OktaEventReceived(_Contract):
    schema_version: Literal[1] = 1
    org: str = Field(description="Okta org URL the event came from", examples=["https://acme.okta.com"])
    event_uuid: str = Field(description="System Log event uuid, the dedupe key")
    event_type: str = Field(examples=["application.user_membership.add"])
    published: datetime
    transaction_id: str | None = None
    request_api_token_id: str | None = Field(
        default=None, description="transaction.detail.requestApiTokenId: set when an API token caused the event"
    )
    actor_id: str | None = Field(
        default=None, description="actor.id: the OAuth 2.0 service app's client id when its token caused the event")
    targets: tuple[EventTarget, ...] = ()


class SyncReason(StrEnum):
    INITIAL = "initial"
    NEW_APP = "new_app"
    CURSOR_REJECTED = "cursor_rejected"
    CURSOR_EXPIRED = "cursor_expired"
    OPERATOR = "operator"
    STARTUP = "startup"


class AppSyncRequested(_Contract):
    schema_version: Literal[1] = 1
    org: str
    app_id: OktaId = Field(examples=["0oa1b2c3d4e5f6g7h8i9"])
    reason: SyncReason
    scope: Literal["users", "groups"] = Field(
        default="users", description="users: re-list the assignments; groups: resolve push_groups, push each one "
                                     "with its members and unlink the groups no longer listed")
    sync_id: str = Field(description="unique id of this sync run; assignments not seen in it are unassigned")


class PlanAction(StrEnum):
    UPSERT = "upsert"  # create when missing, else PUT the whole user
    DEACTIVATE = "deactivate"  # active=false on an existing account; never a DELETE


class MappedAttribute(_Contract):
    """One SCIM attribute value produced by the app's attribute mapping (path as in the connectors file)."""

    path: str = Field(examples=["name.givenName", "urn:okta:jira:1.0:user:department"])
    value: JsonValue


class ScimOperationPlanned(_Contract):
    schema_version: Literal[1] = 1
    org: str
    app_id: OktaId
    okta_user_id: OktaId
    version: int = Field(description="grows per (org, app, user) by a MongoDB $inc taken before the Okta read")
    action: PlanAction
    attributes: tuple[MappedAttribute, ...] = ()
    unique_value: str = Field(description="value of the app's unique user field, used for lookup before create")
    cause: str = Field(description="what led to the plan: an event type or 'sync:<reason>'")
    event_uuid: str | None = None


class TargetValuesObserved(_Contract):
    schema_version: Literal[1] = 1
    org: str
    app_id: OktaId
    okta_user_id: OktaId
    values: tuple[MappedAttribute, ...] = Field(description="path = the Okta app-user profile attribute name")
    event_uuid: str | None = None


class GroupAction(StrEnum):
    PUSH = "push"  # create or link the target group, name it, then bring its members in line
    UNLINK = "unlink"  # forget the target group and leave it in place (unpushed, or deleted in Okta)
    DELETE = "delete"  # operator command only: delete the target group, then unlink


class GroupPlanned(_Contract):
    schema_version: Literal[1] = 1
    org: str
    app_id: OktaId
    okta_group_id: OktaId = Field(examples=["00g1b2c3d4e5f6g7h8i9"])
    version: int = Field(description="grows per (org, app, group) by a MongoDB $inc taken before the Okta read")
    action: GroupAction
    display_name: str | None = Field(default=None, description="the Okta group's name (push)")
    description: str | None = None
    cause: str = Field(description="event type, 'sync:<reason>' or 'operator:<command>'")
    event_uuid: str | None = None


class MembershipPlanned(_Contract):
    """Names members of one pushed group to bring in line; the desired state (member or not) and its version are
    stored per (org, app, group, member) and read under the group's lease when applied, so plans can be reordered,
    duplicated or stale without effect."""

    schema_version: Literal[1] = 1
    org: str
    app_id: OktaId
    okta_group_id: OktaId
    okta_user_ids: tuple[OktaId, ...] = Field(min_length=1)
    cause: str
    event_uuid: str | None = None


class AuditStep(StrEnum):
    RECEIVED = "received"
    PLANNED = "planned"
    APPLIED = "applied"
    SKIPPED = "skipped"
    SKIPPED_STALE = "skipped_stale"
    RETRIED = "retried"
    HELD = "held"
    RELEASED = "released"  # a held plan let through again (recorded once, as its park is: not at every loop)
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    REPLAYED = "replayed"  # an operator sent a dead letter back (``bridgectl dlq replay``)


class Reason(StrEnum):
    """Why a step happened, as a code beside the audit record's text (bounded: a label for metrics, a filter for
    the audit API). The policy that maps failures to dispositions is :mod:`okta_bridge.outcomes`."""

    RECEIVED = "received"  # the poller published an event, or a sync was requested
    PLANNED = "planned"  # a plan went out (user, group or membership)
    APPLIED = "applied"  # the target holds the plan now (or already did)
    STALE = "stale"  # a newer plan of the key was applied before this one
    SUPERSEDED = "superseded"  # a newer plan of the key was taken while this one read Okta, or in the same batch
    NOTHING_TO_SEND = "nothing_to_send"  # the state table sends nothing (suspended: ignore, pending users)
    ACTION_OFF = "action_off"  # create_users / update_users / deactivate_users switched off
    NOT_CONFIGURED = "not_configured"  # no configured app or pushed group concerns this message
    GROUP_LISTED_TWICE = "group_listed_twice"  # two push_groups entries of an app name one Okta group
    GROUP_NAME_CONFLICT = "group_name_conflict"  # a push_groups name that more than one Okta group has
    GROUP_NOT_IN_OKTA = "group_not_in_okta"  # no Okta group has the push_groups id or name (yet, or any more)
    TARGET_TRANSIENT = "target_transient"  # 5xx, timeout, connection refused
    TARGET_RATE_LIMITED = "target_rate_limited"  # 429
    TARGET_AUTH = "target_auth"  # 401 / 403: credentials
    TARGET_REJECTED = "target_rejected"  # another 4xx, or an unreadable answer
    TARGET_CONFLICT = "target_conflict"  # a group name or account that cannot be linked
    ADOPTION_HELD = "adoption_held"  # an existing account another link holds or whose externalId names another user
    TARGET_NO_GROUPS = "target_no_groups"  # the target has no /Groups
    MEMBER_REFUSED = "member_refused"  # one member of a membership batch refused by the target
    TARGET_ONLY_MEMBER_REFUSED = "target_only_member_refused"  # the removal of a member no Okta user stands for
    GROUP_NOT_READY = "group_not_ready"  # a membership plan before its group exists in the target
    CIRCUIT_OPEN = "circuit_open"  # the app's circuit is open: parked in the hold queue
    GUARD_HELD = "guard_held"  # a deactivation past the app's guard threshold: held until an operator acts
    CIRCUIT_CLOSED = "circuit_closed"  # the app's circuit let a held plan through (closed, or its probe)
    OKTA_TRANSIENT = "okta_transient"  # 5xx, timeout, network
    OKTA_RATE_LIMITED = "okta_rate_limited"  # 429
    OKTA_AUTH = "okta_auth"  # 401 / 403 on the API token
    OKTA_REJECTED = "okta_rejected"  # another 4xx from Okta
    INTERNAL = "internal"  # the database or the broker failed: tried again
    INVALID_MESSAGE = "invalid_message"  # the message matches no contract
    GAVE_UP = "gave_up"  # the attempts ran out
    OPERATOR = "operator"  # an operator's command (replay, drop, delete-group)


class AuditRecorded(_Contract):
    """One step of one change. Every record the bridge makes carries a :class:`Reason` code: building one without
    (in Python) is refused. Records read from JSON may lack it: audit batches of earlier releases, kept whole in the
    dead letters for ``DEAD_LETTERS_RETENTION_DAYS`` and replayed to the audit-recorder, or in flight in an
    upgrade; the wire contract is unchanged (``schema_version`` 1), so they are still stored."""

    schema_version: Literal[1] = 1
    at: datetime
    service: str
    step: AuditStep
    org: str
    event_uuid: str | None = None
    event_type: str | None = None
    app_id: str | None = None
    okta_user_id: str | None = None
    okta_group_id: str | None = None
    plan_version: int | None = None
    target_id: str | None = None
    scim_method: str | None = None
    scim_path: str | None = Field(default=None, description="path with filter values redacted")
    scim_status: int | None = None
    duration_ms: float | None = None
    trace_id: str | None = None
    reason: Reason | None = Field(default=None, description="why, as a code (the text is in detail); required in "
                                                            "every record the bridge makes, absent only in some "
                                                            "records of earlier releases")
    detail: str | None = Field(default=None, description="human-readable reason; never a secret")
    actor: str | None = Field(default=None, max_length=200,
                              description="who asked for it, for an operator's action: the person signed in to the "
                                          "console, the API token's name, or the OS user of bridgectl")

    @model_validator(mode="after")
    def _has_a_reason(self, info: ValidationInfo) -> "AuditRecorded":
        if self.reason is None and info.mode == "python":  # made here, not read from a message of an earlier release
            raise ValueError("an audit record needs a reason code (okta_bridge.contracts.Reason)")
        return self


class AuditBatch(_Contract):
    """The audit records of one batch of work, in one message; each record keeps its own event, key and trace."""

    schema_version: Literal[1] = 1
    records: tuple[AuditRecorded, ...] = Field(min_length=1)
