"""Okta-shaped identifiers and timestamps."""
from __future__ import annotations

import secrets
import string
from datetime import datetime, timezone

_ALPHABET = string.ascii_letters + string.digits


def _table(alphabet: str) -> bytes:
    """Maps a random byte to a character of `alphabet` (the slight modulo bias does not matter for simulated ids)."""
    return bytes(ord(alphabet[b % len(alphabet)]) for b in range(256))


_ID_CHARS = _table(_ALPHABET)
_TXN_CHARS = _table(_ALPHABET + "-_@")


def okta_id(prefix: str) -> str:
    """A 20-character Okta id with its type prefix (`00u` user, `0oa` app, `0ua` app user, `00g` group)."""
    return prefix + secrets.token_bytes(20 - len(prefix)).translate(_ID_CHARS).decode()


def transaction_id() -> str:
    return secrets.token_bytes(27).translate(_TXN_CHARS).decode()


def iso(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> float:
    text = value.strip().replace("Z", "+00:00")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()
