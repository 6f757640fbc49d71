"""Adapters of the SCIM dispatcher: the SCIM client that talks to on-prem targets."""

from .scim_auth import auth_headers
from .scim_client import USER_AGENT, ScimClient
from .scim_dialects import SCIM11, SCIM20, Dialect
from .scim_errors import (
    ScimAuthError,
    ScimConflictError,
    ScimError,
    ScimGroupsUnsupportedError,
    ScimNotFoundError,
    ScimPermanentError,
    ScimPreconditionFailedError,
    ScimTransientError,
)
from .scim_groups import GroupUpdate, ScimGroup, ScimGroupClient, split_until_isolated
from .scim_user import ScimUser

__all__ = [
    "SCIM11",
    "SCIM20",
    "USER_AGENT",
    "Dialect",
    "GroupUpdate",
    "ScimAuthError",
    "ScimClient",
    "ScimConflictError",
    "ScimError",
    "ScimGroup",
    "ScimGroupClient",
    "ScimGroupsUnsupportedError",
    "ScimNotFoundError",
    "ScimPermanentError",
    "ScimPreconditionFailedError",
    "ScimTransientError",
    "ScimUser",
    "auth_headers",
    "split_until_isolated",
]
