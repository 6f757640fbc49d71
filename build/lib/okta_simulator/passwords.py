"""Users' passwords as Okta keeps them: only a salted hash (scrypt), never returned by an API and never in a `repr`
or a log line; a check takes the same time whether the user exists or not."""
from __future__ import annotations

import hashlib
import hmac
import secrets

_N, _R, _P = 2 ** 14, 8, 1  # scrypt's interactive-login cost (16 MiB, some tens of ms)
_DUMMY = "scrypt$" + "00" * 16 + "$" + "00" * 32


def _derive(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)


def hash_password(password: str) -> str:
    """`scrypt$<salt hex>$<hash hex>`; a blank password is refused (the message never holds it)."""
    if not isinstance(password, str) or not password:
        raise ValueError("password: must be a non-empty string")
    salt = secrets.token_bytes(16)
    return f"scrypt${salt.hex()}${_derive(password, salt).hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time; `stored` None (no password) costs a hash too and is False."""
    _, salt, digest = (stored or _DUMMY).split("$")
    ok = hmac.compare_digest(_derive(password, bytes.fromhex(salt)), bytes.fromhex(digest))
    return ok and stored is not None
