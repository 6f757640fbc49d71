"""Per-minute rate limits per endpoint group and per token, plus call counters and injected faults.

Fixed one-minute windows aligned on the minute; each token gets `share` of the plan's limit
(ODD `rl2-token-oauth`: 50 % by default).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict, deque
from dataclasses import dataclass

from .plans import PLANS


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int


HISTORY_WINDOWS = 180  # minutes of per-window counts kept for `stats`


class RateLimiter:
    def __init__(self, plan: str, share: float) -> None:
        self.set_plan(plan, share)
        self._windows: dict[tuple[str, str], tuple[int, int]] = {}
        # calls allowed per (bucket, window start), the most of any one token: what a limit is measured against
        self.by_window: dict[tuple[str, int], int] = {}
        self._newest_window = 0
        self.calls: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.rejected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def set_plan(self, plan: str, share: float | None = None) -> None:
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r}; choose from {sorted(PLANS)}")
        self.plan = plan
        if share is not None:
            if not 0 < share <= 1:
                raise ValueError("token share must be in (0, 1]")
            self.share = share

    def limit_for(self, bucket: str) -> int:
        return max(1, math.floor(PLANS[self.plan][bucket] * self.share))

    def check(self, bucket: str, token_id: str, now: float) -> Decision:
        """Count one call against (bucket, token) and decide whether it is allowed."""
        self.calls[bucket][token_id] += 1
        window = int(now // 60) * 60
        start, used = self._windows.get((bucket, token_id), (window, 0))
        if start != window:
            used = 0
        limit = self.limit_for(bucket)
        allowed = used < limit
        if allowed:
            used += 1
        else:
            self.rejected[bucket][token_id] += 1
        self._windows[(bucket, token_id)] = (window, used)
        if window > self._newest_window:  # a new minute: forget the windows older than the history
            self._newest_window = window
            self.by_window = {k: v for k, v in self.by_window.items() if k[1] > window - 60 * HISTORY_WINDOWS}
        self.by_window[(bucket, window)] = max(self.by_window.get((bucket, window), 0), used)
        return Decision(allowed, limit, max(0, limit - used), window + 60)

    def stats(self) -> dict:
        def plain(d):
            return {b: dict(per_token) for b, per_token in d.items()}
        totals = {b: sum(per_token.values()) for b, per_token in self.calls.items()}
        return {"plan": self.plan, "tokenShare": self.share, "calls": plain(self.calls),
                "callsByBucket": totals, "rateLimited": plain(self.rejected),
                "limits": {b: self.limit_for(b) for b in PLANS[self.plan]},
                "usedByWindow": {f"{b}@{w}": n for (b, w), n in sorted(self.by_window.items())}}


# how a fault can change the answer of `GET /api/v1/users` (see users_api.edit_answer)
EDITS = ("drop_first", "repeat_first", "add_unasked")


@dataclass(frozen=True)
class Fault:
    status: int | None  # 429 or 5xx instead of the answer; None: the answer itself, late and/or edited
    delay_s: float = 0.0  # the answer (computed when asked) is sent this much later: what it says is as of the ask
    path: re.Pattern | None = None  # only requests whose path matches; None: any in the bucket
    edit: str | None = None  # one of EDITS: the list-users answer is changed; only such requests take this fault
    reset_s: float | None = None  # a 429's X-Rate-Limit-Reset this many seconds ahead (Remaining 0), not the window's


class FaultInjector:
    """Queues of faults to answer with, per endpoint group ("*" = any group), in the order they were injected."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Fault]] = defaultdict(deque)
        self.used = 0  # counted by the gateway: once the fault's answer is decided (a late one: computed)

    def inject(self, bucket: str, status: int | None, count: int, delay_s: float = 0.0,
               path_regex: str | None = None, edit: str | None = None, reset_s: float | None = None) -> None:
        if status is None and delay_s <= 0 and edit is None:
            raise ValueError("a fault is a status (429 or 5xx), a delay, an edit, or a delay and an edit")
        if status is not None and status != 429 and not 500 <= status <= 599:
            raise ValueError("status must be 429 or 5xx")
        if edit is not None and (edit not in EDITS or status is not None):
            raise ValueError(f"edit must be one of {EDITS}, with no status (it changes an answer)")
        if reset_s is not None and status != 429:
            raise ValueError("reset_s is a 429's")
        fault = Fault(status, delay_s, re.compile(path_regex) if path_regex else None, edit, reset_s)
        self._queues[bucket].extend([fault] * count)

    def take(self, bucket: str, path: str = "", answered: bool = True, editable: bool = False) -> Fault | None:
        """The next fault for this request; a late or edited answer only for a request that gets its answer (not a
        429), an edit only for a request whose answer can be edited (a users listing)."""
        for key in (bucket, "*"):
            queue = self._queues.get(key)
            for fault in queue or ():
                if ((fault.path is None or fault.path.search(path)) and (answered or fault.status is not None)
                        and (editable or fault.edit is None)):
                    queue.remove(fault)
                    return fault
        return None

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def clear(self) -> None:
        self._queues.clear()
