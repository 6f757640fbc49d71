"""The System Log store and its query semantics (ODD `docs/reference/api/system-log`).

A *polling* request (no `until`, sortOrder ASCENDING) walks events in persistence (insertion) order and
always answers with a `next` cursor, even on an empty page. Other requests are bounded: ordered by
`published`, with a `next` link only while results remain. Cursors are opaque:
base64url("<kind>.<position>.<epoch>"); `reject_cursors()` bumps the epoch so older cursors answer 400.

Cost per page: a polling page finds its start by bisection (events are kept in `seq` order) and reads on only as
far as it needs; a bounded query bisects the events its filter matches, kept sorted by `published` while the log
is unchanged.
"""
from __future__ import annotations

import base64
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from .errors import invalid
from .ids import parse_iso
from .logfilter import parse_filter

SEVEN_DAYS = 7 * 24 * 3600
BOUNDED_CACHE = 8  # filters whose matching events are kept sorted for bounded queries


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
        self._items: list[Stored] = []  # in seq order
        self._seq = 0
        self._epoch = 0
        self._rows: dict[str | None, list[Stored]] = {}  # filter -> matching events by published

    def _changed(self) -> None:
        self._rows.clear()

    def append(self, event: dict, persisted: float) -> None:
        self._seq += 1
        self._items.append(Stored(self._seq, persisted, parse_iso(event["published"]), event))
        self._changed()

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
        self._changed()

    def all(self) -> list[dict]:
        return [s.event for s in self._items]

    def expire_before(self, ts: float) -> int:
        """Drop retained events published before `ts` (what a 90-day retention does); returns how many."""
        before = len(self._items)
        self._items = [s for s in self._items if s.published >= ts]
        self._changed()
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
        return self._bounded(now, since, until, after, limit, sort_order, pred, filter_text)

    def _poll(self, now, since, after, limit, pred) -> Page:
        if after is not None:
            start = self._parse_cursor(after, "p")
        else:
            since_ts = parse_iso(since) if since else now - SEVEN_DAYS
            start = max((s.seq for s in self._items if s.persisted < since_ts), default=0)
        items, page = self._items, []
        i = bisect_right(items, start, key=lambda s: s.seq)
        while i < len(items) and len(page) < limit:
            if pred(items[i].event):
                page.append(items[i])
            i += 1
        if len(page) < limit:
            position = max(start, self._seq)  # everything up to now was scanned
        else:
            position = page[-1].seq if page else start
        return Page([s.event for s in page], self._cursor("p", position))

    def _bounded(self, now, since, until, after, limit, sort_order, pred, filter_text) -> Page:
        until_ts = parse_iso(until) if until else now
        since_ts = parse_iso(since) if since else until_ts - SEVEN_DAYS
        rows = self._matching(filter_text, pred)
        lo = bisect_left(rows, since_ts, key=lambda s: s.published)
        hi = bisect_left(rows, until_ts, lo=lo, key=lambda s: s.published)
        offset = self._parse_cursor(after, "b") if after else 0
        if sort_order == "DESCENDING":
            chunk = rows[max(lo, hi - offset - limit):max(lo, hi - offset)][::-1]
        else:
            chunk = rows[lo + offset:min(hi, lo + offset + limit)]
        more = offset + limit < hi - lo
        return Page([s.event for s in chunk], self._cursor("b", offset + limit) if more else None)

    def _matching(self, filter_text: str | None, pred) -> list[Stored]:
        """Every event the filter matches, by (published, seq); kept until the log changes."""
        rows = self._rows.get(filter_text)
        if rows is None:
            rows = sorted((s for s in self._items if pred(s.event)), key=lambda s: (s.published, s.seq))
            if len(self._rows) >= BOUNDED_CACHE:
                self._rows.clear()
            self._rows[filter_text] = rows
        return rows
