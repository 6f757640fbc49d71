"""Okta-shaped identifiers and timestamps."""
from __future__ import annotations

import secrets
import string
from datetime import datetime, timezone

_ALPHABET = string.ascii_letters + string.digits


def okta_id(prefix: str) -> str:
    """A 20-character Okta id with its type prefix (`00u` user, `0oa` app, `0ua` app user, `00g` group)."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(20 - len(prefix)))


def transaction_id() -> str:
    return "".join(secrets.choice(_ALPHABET + "-_@") for _ in range(27))


def iso(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> float:
    text = value.strip().replace("Z", "+00:00")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()
