"""What may leave the process as text: secrets and a person's values masked, error text cut to one bounded line.

Three kinds of text leave a service: log lines (:mod:`okta_bridge.logs` masks every handler's output), span
exceptions (:mod:`okta_bridge.telemetry` masks them before export) and failure text, which reaches the audit trail,
retries and dead letters (:func:`error_text`, called where an error becomes a failure: :mod:`okta_bridge.outcomes`).

- **Secrets** are masked wherever they appear: the values registered at start (the Okta token, every connector's
  header values), the password of any URL (``amqp://user:***@``, ``mongodb://user:***@``, registered or not) and
  the credential after an ``Authorization`` scheme word (``Bearer ***``, ``SSWS ***``, ``Basic ***``).
- **A person's values** (the plan's unique value, userName, emails, names, every attribute value) are masked in
  failure text, as is anything shaped like an email address: a target or Okta often echoes what it refused.
- **Failure text** is one line (control characters and newlines become spaces) of at most :data:`TEXT_LIMIT`
  characters, however long the target's or Okta's answer was (a 64 KB error description included).

Header values are checked at start (:func:`check_header_value`): a value with a control character or surrounding
whitespace would make the HTTP library raise an error that quotes the whole header, token included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "TEXT_LIMIT", "check_header_value", "error_text", "mask_personal", "mask_secrets", "one_line",
           "person_strings",
           "forget_secret", "personal_values", "register_secret", "register_url_secrets"]

MASK = "***"
TEXT_LIMIT = 300  # characters of failure text kept: enough for a status, a SCIM type and a sentence

_SECRETS: set[str] = set()
_compiled: re.Pattern[str] | None = None
# scheme://user:password@host: the password, whatever the scheme (amqp, amqps, mongodb, mongodb+srv, http…)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@]+(?=@)")
# the credential after a scheme word: a token-like word (a digit or a symbol in it, or 20 characters and more), so
# that "Basic authentication required" stays readable
_TOKEN = r"[A-Za-z0-9._~+/=\-]"
_AUTH_SCHEME = re.compile(rf"(?P<head>\b(?:Bearer|bearer|SSWS|Basic|DPoP)\s+)"
                          rf"(?:(?={_TOKEN}*[0-9._~+/=\-]){_TOKEN}{{8,}}|{_TOKEN}{{20,}})")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s{2,}")
_ESCAPED = re.compile(r"\\[nrt]")  # line breaks as JSON writes them, in a body that was cut and is not JSON any more
_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")


def register_secret(value: str | None) -> None:
    """A value masked in every log line and span from now on (values under 4 characters would garble text)."""
    global _compiled
    if value and len(value) >= 4 and value not in _SECRETS:
        _SECRETS.add(value)
        _compiled = None


def forget_secret(value: str | None) -> None:
    """A secret that is no longer used (an access token replaced long enough ago): the list stays bounded in a
    process that renews tokens every hour for months."""
    global _compiled
    if value in _SECRETS:
        _SECRETS.discard(value)
        _compiled = None


def register_url_secrets(*urls: str) -> None:
    """The passwords of connection URLs (RabbitMQ, MongoDB), also where they appear without their URL."""
    from urllib.parse import unquote, urlsplit

    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password and password != "guest":
            register_secret(password)
            register_secret(unquote(password))


def mask_secrets(text: str) -> str:
    """Registered secrets, URL passwords and the credential after an auth scheme word, each as ``***``."""
    global _compiled
    if _SECRETS:
        if _compiled is None:
            _compiled = re.compile("|".join(map(re.escape, sorted(_SECRETS, key=len, reverse=True))))
        text = _compiled.sub(MASK, text)
    text = _URL_PASSWORD.sub(rf"\g<head>{MASK}", text)
    return _AUTH_SCHEME.sub(rf"\g<head>{MASK}", text)


def person_strings(values: Iterable[Any]) -> tuple[str, ...]:
    """Every string among ``values`` (nested dicts and lists too, but not a multi-valued entry's ``type``); for an
    email, its local part too."""
    found: list[str] = []
    for value in values:
        _walk(value, found)
    return tuple(dict.fromkeys(v for v in found if len(v.strip()) >= 2))


def _walk(value: Any, found: list[str]) -> None:
    if isinstance(value, str):
        found.append(value)
        local, at, _ = value.partition("@")
        if at and len(local) >= 3:
            found.append(local)
    elif isinstance(value, dict):  # a multi-valued attribute's entries: their "type" (work, home) is no one's
        for k, v in value.items():
            if k != "type":
                _walk(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _walk(v, found)


def personal_values(message: Any) -> tuple[str, ...]:
    """A message's values of a person: a plan's unique value and every string among its attribute values
    (names, emails, phone numbers, department…); for an email, its local part too (``ann.lee`` of
    ``ann.lee@acme.com``), which servers quote as a username."""
    found: list[str] = []

    def walk(value: Any) -> None:
        _walk(value, found)

    walk(getattr(message, "unique_value", None))  # a group plan's name is not a person's: it stays readable
    for attribute in getattr(message, "attributes", ()) or ():
        walk(getattr(attribute, "value", None))
    for attribute in getattr(message, "values", ()) or ():
        walk(getattr(attribute, "value", None))
    for target in getattr(message, "targets", ()) or ():  # an event's: the user's login and name
        walk(getattr(target, "alternate_id", None))
        walk(getattr(target, "display_name", None))
    return tuple(dict.fromkeys(v for v in found if len(v.strip()) >= 2))


def mask_personal(text: str, values: Iterable[str] = ()) -> str:
    """Each value (case-insensitively, as a whole word: ``Ann`` is masked, ``announce`` is not), then anything
    shaped like an email address."""
    ordered = sorted({v.strip() for v in values if v and len(v.strip()) >= 2}, key=len, reverse=True)
    if ordered:
        pattern = "|".join(re.escape(v) for v in ordered)
        text = re.sub(rf"(?<![A-Za-z0-9])(?:{pattern})(?![A-Za-z0-9])", MASK, text, flags=re.I)
    return _EMAIL.sub(MASK, text)


# what pydantic puts in a validation error's text: the value that failed (a message's whole profile, say)
_INPUT_VALUE = re.compile(r"input_value=(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\{.*?\}(?=, input_type)|"
                          r"\[.*?\](?=, input_type)|[^,\]\n]*)")


def mask_traceback(text: str) -> str:
    """A traceback fit for a log: secrets masked, the values a validation error quotes (``input_value=…``) and
    anything shaped like an email address masked (an unexpected error's text may carry a person's data; the
    traceback's lines of code stay)."""
    return _EMAIL.sub(MASK, _INPUT_VALUE.sub(f"input_value={MASK}", mask_secrets(text)))


def one_line(text: str, limit: int = TEXT_LIMIT) -> str:
    """Control characters and line breaks as single spaces, cut to ``limit`` characters (with ``…``)."""
    flat = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def error_text(text: str | None, personal: Iterable[str] = (), limit: int = TEXT_LIMIT) -> str:
    """Failure text fit for the audit trail, logs, spans and dead letters: a person's values and secrets masked,
    one line, at most ``limit`` characters. The text is cut to a few times the limit first, so a huge answer
    costs no more than a small one (what is cut there is cut from the result anyway)."""
    if not text:
        return ""
    head = _ESCAPED.sub(" ", text[: limit * 4])
    return one_line(mask_secrets(mask_personal(head, personal)), limit)


def check_header_value(setting: str, value: str, *, ascii_only: bool = True) -> str:
    """Refuse a header value the HTTP library would refuse at the first request, quoting it: the error names
    ``setting`` (the environment variable or the connectors file's field), never the value. ``ascii_only=False``
    for a secret that is encoded before it is sent (a Basic auth password): only control characters and
    surrounding whitespace are refused then."""
    if value != value.strip():
        raise ValueError(f"{setting}: the value has surrounding whitespace or a line break (a secret file saved with "
                         "a trailing newline?); remove it")
    if _CONTROL.search(value) if not ascii_only else not _HEADER_SAFE.fullmatch(value):
        raise ValueError(f"{setting}: the value contains a control or non-ASCII character; an HTTP header cannot "
                         "carry it")
    return value
