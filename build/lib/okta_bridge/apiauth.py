"""Who may call the bridge's HTTP APIs: one token model and one set of settings for every API the bridge serves (the
audit API and the operator console).

``API_TOKENS``: comma-separated entries ``NAME:ROLE:TOKEN``. ``TOKEN`` is best given as ``sha256:<64 hex digits>``
(the SHA-256 of the token, so the setting itself grants nothing: ``python -m okta_bridge.apiauth hash`` prints it
for a token read from stdin); a plain token is accepted too. ``ROLE`` is ``reader`` (read-only: the audit trail) or
``operator`` (also the console's actions: replay, release, provision; an operator may read); the console's names
``viewer`` and ``admin`` mean the same two roles. Callers send
``Authorization: Bearer <token>``. No entry: every request is refused (401), never served anonymously.

``API_ALLOWED_HOSTS``: comma-separated host names (no port) the ``Host`` header may carry (default ``127.0.0.1``,
``localhost``); anything else is answered 400 before any route runs (a DNS-rebinding page in a browser on the
operator's machine cannot read the API). ``*`` allows any (behind a proxy that checks it).

Tokens are compared by their SHA-256 in constant time; neither a token nor its hash is ever logged. Health and
metrics endpoints are not covered: they carry no personal data and are served on their own port.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ApiAuthSettings", "ApiToken", "ApiTokens", "ApiTokensError", "ROLES", "hash_token"]

Role = Literal["reader", "operator", "viewer", "admin"]
# the console's names for the same two roles (viewer = reader, admin = operator): either may be written
ROLES: dict[str, frozenset[str]] = {"reader": frozenset({"read"}), "operator": frozenset({"read", "operate"}),
                                    "viewer": frozenset({"read"}), "admin": frozenset({"read", "operate"})}
_HASHED = re.compile(r"sha256:[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.@-]+")


class ApiTokensError(ValueError):
    """``API_TOKENS`` cannot be used; the message names the entry, never a token."""


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ApiToken:
    name: str  # who holds it: shown in logs and audit, never the token
    role: Role
    digest: str  # sha256:<hex>

    def grants(self, right: str) -> bool:
        return right in ROLES[self.role]


class ApiTokens:
    """The parsed ``API_TOKENS``; :meth:`check` answers who presented a token, or None."""

    def __init__(self, tokens: list[ApiToken]) -> None:
        self._tokens = tokens

    @classmethod
    def parse(cls, value: str) -> "ApiTokens":
        """Raises ApiTokensError naming the entry (by its position and name, never its token)."""
        tokens: list[ApiToken] = []
        for i, entry in enumerate(e.strip() for e in value.split(",")):
            if not entry:
                continue
            name, _, rest = entry.partition(":")
            role, _, secret = rest.partition(":")
            if not _NAME.fullmatch(name):
                raise ApiTokensError(f"API_TOKENS entry {i + 1}: expected NAME:ROLE:TOKEN with a name of letters, digits, "
                                 "_ . @ -")
            if role not in ROLES:
                # no name in this message: an entry that is a bare token would show it
                raise ApiTokensError(f"API_TOKENS entry {i + 1}: expected NAME:ROLE:TOKEN, ROLE one of {', '.join(ROLES)}")
            if len(secret) < 16 and not secret.startswith("sha256:"):
                raise ApiTokensError(f"API_TOKENS entry {i + 1} ({name}): the token is shorter than 16 characters")
            if secret.startswith("sha256:") and not _HASHED.fullmatch(secret):
                raise ApiTokensError(f"API_TOKENS entry {i + 1} ({name}): sha256: needs 64 lower-case hex digits")
            if any(t.name == name for t in tokens):
                raise ApiTokensError(f"API_TOKENS entry {i + 1}: the name {name} is used twice")
            tokens.append(ApiToken(name, role, secret if _HASHED.fullmatch(secret) else hash_token(secret)))  # type: ignore[arg-type]
        return cls(tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def current(self, name: str, digest: str) -> ApiToken | None:
        """The entry a session opened with a token still stands for: the same name and token (a removed or changed
        entry ends such sessions at once, and a changed role applies at once)."""
        found = next((t for t in self._tokens if t.name == name), None)
        return found if found is not None and hmac.compare_digest(found.digest, digest) else None

    def check(self, presented: str | None) -> ApiToken | None:
        if not presented:
            return None
        digest = hash_token(presented)
        found = None
        for token in self._tokens:  # every entry compared: the time does not tell which one matched
            if hmac.compare_digest(token.digest, digest):
                found = token
        return found


class ApiAuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="API_", extra="ignore")

    tokens: SecretStr = Field(default=SecretStr(""), description="NAME:ROLE:TOKEN,… (TOKEN: sha256:<hex> or plain)")
    allowed_hosts: str = Field(default="127.0.0.1,localhost", description="Host header values accepted (no port)")

    def parsed_tokens(self) -> ApiTokens:
        return ApiTokens.parse(self.tokens.get_secret_value())

    def hosts(self) -> list[str]:
        return [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]


def main() -> None:
    """``python -m okta_bridge.apiauth hash``: the ``sha256:…`` form of a token read from stdin."""
    if sys.argv[1:] != ["hash"]:
        print("usage: python -m okta_bridge.apiauth hash < token-file", file=sys.stderr)
        raise SystemExit(2)
    token = sys.stdin.read().strip()
    if len(token) < 16:
        print("a token of at least 16 characters, please (e.g. `openssl rand -hex 32`)", file=sys.stderr)
        raise SystemExit(2)
    print(hash_token(token))


if __name__ == "__main__":
    main()
