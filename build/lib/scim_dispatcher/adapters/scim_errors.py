"""Errors raised by the SCIM client, split the way the dispatcher acts on them.

    ScimError                     any failed SCIM call; carries method, redacted path, status, detail, version
    ├── ScimTransientError        retry later: 5xx, 408, 429 (``retry_after_s``), timeouts, connection errors
    └── ScimPermanentError        dead-letter with the reason: other 4xx, 2xx without the expected SCIM JSON
        ├── ScimAuthError         401 / 403 (the connector's credentials are wrong or lack rights)
        ├── ScimNotFoundError     404
        ├── ScimGroupsUnsupportedError  the target has no Groups (404 on /Groups, 501): see scim_groups
        ├── ScimConflictError     409 (uniqueness: the user already exists)
        └── ScimPreconditionFailedError  412: the resource changed since it was read (If-Match); the client reads
                                  it again and re-applies, and past its attempts raises a ScimTransientError

A 500 on PATCH/PUT for a missing user stays transient: some real servers answer 404 on GET but 500 on
PATCH or DELETE for the same missing resource (okta-scim-protocol.md section 2). The dispatcher's retry budget
ends it; callers that want to tell them apart can ``get_user`` first, which does answer 404.

Safety: ``path`` is a template (``/Users/{id}``, ``/Users?filter=<redacted>&startIndex=1&count=100``) because
ids may equal the userName; ``detail`` is scrubbed of every header value, password and identifier the request
carried before it is stored. Nothing here holds the request, its headers or its body.
"""

from __future__ import annotations

from http import HTTPStatus

from okta_bridge.contracts import Reason
from okta_bridge.redact import error_text

__all__ = [
    "ScimAuthError",
    "ScimConflictError",
    "ScimError",
    "ScimGroupsUnsupportedError",
    "ScimNotFoundError",
    "ScimPermanentError",
    "ScimPreconditionFailedError",
    "ScimTransientError",
]


class ScimError(Exception):
    """A SCIM call failed. ``status`` is None when no HTTP response arrived (timeout, connection error)."""

    def __init__(
        self,
        method: str,
        path: str,
        status: int | None,
        detail: str | None = None,
        *,
        version: str,
        scim_type: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail = error_text(detail) or None  # one bounded line, secrets and emails masked
        self.version = version
        self.scim_type = scim_type
        super().__init__(_render(method, path, status, detail, version, reason))

    @property
    def message(self) -> str:
        return str(self.args[0])

    @property
    def code(self) -> Reason:
        """The reason code the outcome policy acts on (:mod:`okta_bridge.outcomes`)."""
        return Reason.TARGET_REJECTED


class ScimTransientError(ScimError):
    """Worth retrying; ``retry_after_s`` is the server's Retry-After when it sent one."""

    @property
    def code(self) -> Reason:
        return Reason.TARGET_RATE_LIMITED if self.status == 429 else Reason.TARGET_TRANSIENT

    def __init__(self, *args: object, retry_after_s: float | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class ScimPermanentError(ScimError):
    """Retrying the same request will fail the same way."""


class ScimAuthError(ScimPermanentError):
    """401 or 403: fix the connector's credentials."""

    code = Reason.TARGET_AUTH  # type: ignore[assignment]


class ScimNotFoundError(ScimPermanentError):
    """404: the resource (or, on a search, the endpoint) does not exist."""


class ScimGroupsUnsupportedError(ScimPermanentError):
    """The target does not support groups (404 on the ``/Groups`` collection, or 501): group push cannot work
    against it until the target (or the connector's base URL) changes."""

    code = Reason.TARGET_NO_GROUPS  # type: ignore[assignment]


class ScimConflictError(ScimPermanentError):
    """409: a user with the same unique attribute already exists."""

    code = Reason.TARGET_CONFLICT  # type: ignore[assignment]


class ScimPreconditionFailedError(ScimPermanentError):
    """412: the ``If-Match`` version is no longer the resource's (someone changed it on the target)."""


def _render(method: str, path: str, status: int | None, detail: str | None, version: str, reason: str | None) -> str:
    if status is None:
        outcome = reason or "no response"
    else:
        outcome = f"{status} {_phrase(status)}".rstrip()
        if reason:
            outcome += f" ({reason})"
    text = f"{method} {path} -> {outcome}"
    if detail:
        text += f": {detail}"
    return f"{text} (scim {version})"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
