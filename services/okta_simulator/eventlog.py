"""The System Log store and its query semantics (ODD `docs/reference/api/system-log`).

A *polling* request (no `until`, sortOrder ASCENDING) walks events in persistence (insertion) order and
always answers with a `next` cursor, even on an empty page. Other requests are bounded: ordered by
`published`, with a `next` link only while results remain. Cursors are opaque:
base64url("<kind>.<position>.<epoch>"); `reject_cursors()` bumps the epoch so older cursors answer 400.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

from .errors import invalid
from .ids import parse_iso
from .logfilter import parse_filter

SEVEN_DAYS = 7 * 24 * 3600


@dataclass
class Stored:
    seq: int
    persisted: float
    published: float
    event: dict


@dataclass
class Page:
    events: list[dict]
    next_cursor: str | None


class EventLog:
    def __init__(self) -> None:
        self._items: list[Stored] = []
        self._seq = 0
        self._epoch = 0

    def append(self, event: dict, persisted: float) -> None:
        self._seq += 1
        self._items.append(Stored(self._seq, persisted, parse_iso(event["published"]), event))

    def append_raw(self, event: object, persisted: float) -> None:
        """Append anything, as a broken or future Okta might write it (test harness only): an event that is not an
        object, or whose `published` is missing or unreadable, counts as published when persisted."""
        published = persisted
        if isinstance(event, dict):
            try:
                published = parse_iso(event["published"])
            except Exception:  # noqa: BLE001 - malformed on purpose
                pass
        self._seq += 1
        self._items.append(Stored(self._seq, persisted, published, event))

    def all(self) -> list[dict]:
        return [s.event for s in self._items]

    def expire_before(self, ts: float) -> int:
        """Drop retained events published before `ts` (what a 90-day retention does); returns how many."""
        before = len(self._items)
        self._items = [s for s in self._items if s.published >= ts]
        return before - len(self._items)

    def reject_cursors(self) -> None:
        self._epoch += 1

    def _cursor(self, kind: str, position: int) -> str:
        raw = f"{kind}.{position}.{self._epoch}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _parse_cursor(self, text: str, kind: str) -> int:
        try:
            padded = text + "=" * (-len(text) % 4)
            got_kind, position, epoch = base64.urlsafe_b64decode(padded).decode().split(".")
            position_i, epoch_i = int(position), int(epoch)
        except Exception:
            raise invalid("after: The 'after' parameter is invalid") from None
        if got_kind != kind or epoch_i != self._epoch:
            raise invalid("after: The 'after' parameter is invalid")
        return position_i

    def query(self, now: float, since: str | None, until: str | None, after: str | None,
              limit: int, sort_order: str, filter_text: str | None) -> Page:
        pred = parse_filter(filter_text)
        if until is None and sort_order == "ASCENDING":
            return self._poll(now, since, after, limit, pred)
        return self._bounded(now, since, until, after, limit, sort_order, pred)

    def _poll(self, now, since, after, limit, pred) -> Page:
        if after is not None:
            start = self._parse_cursor(after, "p")
            candidates = [s for s in self._items if s.seq > start]
        else:
            since_ts = parse_iso(since) if since else now - SEVEN_DAYS
            start = max((s.seq for s in self._items if s.persisted < since_ts), default=0)
            candidates = [s for s in self._items if s.seq > start]
        page: list[Stored] = []
        for s in candidates:
            if len(page) == limit:
                break
            if pred(s.event):
                page.append(s)
        if len(page) < limit:
            position = max(start, self._seq)  # everything up to now was scanned
        else:
            position = page[-1].seq if page else start
        return Page([s.event for s in page], self._cursor("p", position))

    def _bounded(self, now, since, until, after, limit, sort_order, pred) -> Page:
        until_ts = parse_iso(until) if until else now
        since_ts = parse_iso(since) if since else until_ts - SEVEN_DAYS
        rows = [s for s in self._items if since_ts <= s.published < until_ts and pred(s.event)]
        rows.sort(key=lambda s: (s.published, s.seq), reverse=sort_order == "DESCENDING")
        offset = self._parse_cursor(after, "b") if after else 0
        chunk = rows[offset:offset + limit]
        more = offset + limit < len(rows)
        return Page([s.event for s in chunk], self._cursor("b", offset + limit) if more else None)
