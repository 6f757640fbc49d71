"""Turn an HTTP response or a transport failure into the right :mod:`scim_errors` exception.

Error bodies come in three shapes: SCIM 1.1 ``{"Errors":[{"description","code"}]}``, SCIM 2.0
``{"schemas":[…Error],"detail","status","scimType"}``, and whatever a proxy or framework says (HTML, plain text).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from okta_bridge.redact import mask_personal

from .scim_errors import (
    ScimAuthError,
    ScimConflictError,
    ScimError,
    ScimNotFoundError,
    ScimPermanentError,
    ScimPreconditionFailedError,
    ScimTransientError,
)

__all__ = ["Scrubber", "error_for_response", "error_for_transport", "excerpt", "parse_retry_after"]

EXCERPT_CHARS = 200
_MASK = "***"
_HIDDEN = re.compile(r"<(script|style)\b.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


class Scrubber:
    """Masks values that must never reach an error or a log line, case-insensitively.

    Secrets are masked whatever their length; identifiers (userName, ids) only from 3 characters on, so that an
    id like ``7`` does not garble the rest of the text.
    """

    def __init__(self, secrets: Iterable[str | None] = (), identifiers: Iterable[str | None] = (),
                 personal: Iterable[str] = ()) -> None:
        self._values = frozenset({s for s in secrets if s} | {i for i in identifiers if i and len(i) >= 3})
        self._personal = tuple(personal)  # a person's values (names, department…): masked as whole words
        self._compiled: re.Pattern[str] | None | bool = False  # compiled when first used: errors are rare

    @property
    def _pattern(self) -> re.Pattern[str] | None:
        if self._compiled is False:
            ordered = sorted(self._values, key=len, reverse=True)  # longest first: "Bearer <token>" before "<token>"
            self._compiled = re.compile("|".join(map(re.escape, ordered)), re.I) if ordered else None
        return self._compiled  # type: ignore[return-value]

    @classmethod
    def for_headers(cls, headers: Mapping[str, str]) -> Scrubber:
        """Every header value the caller set (auth or not), and the credential after a scheme word."""
        secrets = [*headers.values()]
        secrets += [v.partition(" ")[2].strip() for v in headers.values()]
        return cls(secrets=secrets)

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(_MASK, text)
        return mask_personal(text, self._personal) if self._personal else text

    def with_values(self, secrets: Iterable[str | None] = (), identifiers: Iterable[str | None] = (),
                    personal: Iterable[str] = ()) -> Scrubber:
        return Scrubber(self._values | {s for s in secrets if s} | {i for i in identifiers if i and len(i) >= 3},
                        personal=(*self._personal, *personal))


def error_for_response(
    response: httpx.Response, method: str, path: str, version: str, scrub: Scrubber
) -> ScimError:
    status = response.status_code
    detail, scim_type = _detail(response)
    args = (method, path, status, scrub(detail))
    kwargs: dict[str, Any] = {"version": version, "scim_type": scim_type}
    if status in (401, 403):
        return ScimAuthError(*args, **kwargs)
    if status == 404:
        return ScimNotFoundError(*args, **kwargs)
    if status == 409:
        return ScimConflictError(*args, **kwargs)
    if status == 412:
        return ScimPreconditionFailedError(*args, **kwargs)
    if status in (408, 429) or status >= 500:
        return ScimTransientError(*args, retry_after_s=parse_retry_after(response), **kwargs)
    return ScimPermanentError(*args, **kwargs)


def error_for_transport(exc: httpx.HTTPError, method: str, path: str, version: str, timeout_s: float) -> ScimError:
    """Only the exception's class name is used: its text is the OS's, and a URL in it could carry the filter."""
    if isinstance(exc, httpx.TimeoutException):
        return ScimTransientError(method, path, None, version=version, reason=f"timed out after {timeout_s:g}s")
    if isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.UnsupportedProtocol):
        reason = f"connection failed ({type(exc).__name__})"
        return ScimTransientError(method, path, None, version=version, reason=reason)
    return ScimPermanentError(method, path, None, version=version, reason=f"request failed ({type(exc).__name__})")


def _detail(response: httpx.Response) -> tuple[str | None, str | None]:
    body = response.content[:65536].decode(response.encoding or "utf-8", errors="replace")
    if not body.strip():
        return None, None
    try:
        data = json.loads(body)
    except ValueError:
        return excerpt(body), None
    if not isinstance(data, dict):
        return excerpt(body), None
    errors = data.get("Errors")
    if isinstance(errors, list):  # SCIM 1.1
        texts = [str(e.get("description") or "") for e in errors if isinstance(e, dict)]
        return "; ".join(t for t in texts if t) or None, None
    for key in ("detail", "message", "error_description", "error"):  # SCIM 2.0, then common framework shapes
        if isinstance(data.get(key), str) and data[key]:
            scim_type = data.get("scimType")
            return _clip(_SPACE.sub(" ", data[key]).strip()), scim_type if isinstance(scim_type, str) else None
    return excerpt(body), None


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The readable text of an HTML or plain-text body: scripts and tags dropped, whitespace collapsed."""
    plain = _TAG.sub(" ", _HIDDEN.sub(" ", text))
    return _clip(_SPACE.sub(" ", html.unescape(plain)).strip(), limit)


def _clip(text: str, limit: int = EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_retry_after(response: httpx.Response) -> float | None:
    """Retry-After as delta-seconds or an HTTP-date, measured from the response's Date header when present."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
        now = _date_header(response) or datetime.now(timezone.utc)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _date_header(response: httpx.Response) -> datetime | None:
    try:
        date = parsedate_to_datetime(response.headers.get("Date", ""))
    except (TypeError, ValueError):
        return None
    return date if date.tzinfo else date.replace(tzinfo=timezone.utc)
