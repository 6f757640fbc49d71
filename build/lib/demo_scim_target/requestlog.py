"""Request log: every SCIM request the target receives, with passwords redacted.

It keeps the last ``max_entries`` (``--log-entries``, default 10,000). Entries carry consecutive ``seq``
numbers, so ``since(n)`` reads only the entries it returns, however long the log.
"""

from __future__ import annotations

import json
from collections import deque
from datetime import datetime, timezone
from itertools import islice
from typing import Any

REDACTED = "***REDACTED***"
MAX_ENTRIES = 10_000  # the default capacity
MAX_TEXT = 4_000


def redact(value: Any) -> Any:
    """Replace every ``password`` field (any depth, any case) and the ``value`` of a
    SCIM 2.0 PATCH operation whose path is ``password`` by ``***REDACTED***``."""
    if isinstance(value, list):
        return [redact(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    password_op = str(value.get("path", "")).lower().rsplit(":", 1)[-1] == "password"
    for key, item in value.items():
        if key.lower() == "password" or (password_op and key.lower() == "value"):
            out[key] = REDACTED
        else:
            out[key] = redact(item)
    return out


def decode_body(raw: bytes, *, redact_it: bool = True) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        if redact_it and "password" in text.lower():
            return REDACTED
        return text[:MAX_TEXT]
    return redact(data) if redact_it else data


class RequestLog:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("the request log needs room for at least one entry")
        self.entries: deque[dict] = deque(maxlen=max_entries)
        self.seq = 0  # monotonic, survives clear()

    @property
    def max_entries(self) -> int:
        return self.entries.maxlen or 0

    def start(self, method: str, path: str, query: str, headers: dict, body: bytes,
              tenant: str = "default") -> dict:
        self.seq += 1
        entry = {
            "seq": self.seq,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "method": method,
            "path": path,
            "tenant": tenant,
            "query": query,
            "user_agent": headers.get("user-agent"),
            "content_type": headers.get("content-type"),
            "body": decode_body(body),
            "status": None,  # filled when the response starts; stays None if none is sent
            "response_body": None,
            "fault": None,
            "duration_ms": None,
        }
        self.entries.append(entry)
        return entry

    def since(self, seq: int = 0) -> list[dict]:
        """Entries with a seq above ``seq``, oldest first. The log holds consecutive seqs ending at
        ``self.seq``, so they are the last ``self.seq - seq`` entries: read from the right end only."""
        wanted = min(len(self.entries), max(self.seq - seq, 0))
        return list(islice(reversed(self.entries), wanted))[::-1]

    def clear(self) -> None:
        self.entries.clear()
