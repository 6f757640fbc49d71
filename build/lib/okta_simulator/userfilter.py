"""The `filter` of `GET /api/v1/users` (spec operation listUsers).

Properties `id`, `status`, `profile.login`, `profile.email`, `profile.firstName`, `profile.lastName` with `eq`;
`lastUpdated` with `eq`, `gt`, `ge`, `lt`, `le` (compared to the millisecond, as the API renders it); clauses joined
by `and` / `or` (`and` binds tighter), parentheses. As the spec says, operators are case-insensitive, property names
and values case-sensitive; `not`, `ne`, `sw`, `co` and any other property are refused (400 E0000031).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Union

from .domain import User
from .errors import invalid_search
from .ids import parse_iso

_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[A-Za-z_][\w.]*)')
_PROFILE = ("profile.login", "profile.email", "profile.firstName", "profile.lastName")
_ORDER = {"eq": lambda a, b: a == b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
          "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}


def _ms(ts: float) -> int:
    return round(ts * 1_000_000) // 1000


@dataclass(frozen=True)
class Clause:
    attr: str
    op: str
    value: str
    bound_ms: int = 0  # lastUpdated: the value in epoch milliseconds

    def matches(self, user: User) -> bool:
        if self.attr == "id":
            return user.id == self.value
        if self.attr == "status":
            return user.status == self.value
        if self.attr == "lastUpdated":
            return _ORDER[self.op](_ms(user.last_updated), self.bound_ms)
        return user.profile.get(self.attr[len("profile."):]) == self.value


@dataclass(frozen=True)
class Junction:
    op: str  # "and" | "or"
    parts: tuple[Node, ...]

    def matches(self, user: User) -> bool:
        test = all if self.op == "and" else any
        return test(part.matches(user) for part in self.parts)


Node = Union[Clause, Junction]


@dataclass(frozen=True)
class UserFilter:
    root: Node

    def matches(self, user: User) -> bool:
        return self.root.matches(user)

    def candidate_ids(self) -> set[str] | None:
        """The only user ids the filter can match (`id eq` clauses), or None when it can match any user."""
        return _ids(self.root)


def _ids(node: Node) -> set[str] | None:
    if isinstance(node, Clause):
        return {node.value} if node.attr == "id" else None
    sets = [_ids(part) for part in node.parts]
    if node.op == "or":
        return None if any(s is None for s in sets) else set().union(*sets)
    known = [s for s in sets if s is not None]
    return set.intersection(*known) if known else None


def _tokens(text: str) -> list[str]:
    pos, out, end = 0, [], len(text.rstrip())
    while pos < end:
        match = _TOKEN.match(text, pos)
        if not match:
            raise invalid_search(f"filter: cannot parse at {text[pos:pos + 20]!r}")
        out.append(match.group(1))
        pos = match.end()
    return out


def parse_user_filter(text: str) -> UserFilter:
    tokens = _tokens(text)
    if not tokens:
        raise invalid_search("filter: empty")
    node, rest = _junction(tokens, "or", lambda t: _junction(t, "and", _atom))
    if rest:
        raise invalid_search(f"filter: unexpected {rest[0]!r}")
    return UserFilter(node)


Parser = Callable[[list[str]], "tuple[Node, list[str]]"]


def _junction(tokens: list[str], op: str, inner: Parser) -> tuple[Node, list[str]]:
    first, rest = inner(tokens)
    parts = [first]
    while rest and rest[0].lower() == op:
        part, rest = inner(rest[1:])
        parts.append(part)
    return (first if len(parts) == 1 else Junction(op, tuple(parts))), rest


def _atom(tokens: list[str]) -> tuple[Node, list[str]]:
    if tokens and tokens[0] == "(":
        node, rest = _junction(tokens[1:], "or", lambda t: _junction(t, "and", _atom))
        if not rest or rest[0] != ")":
            raise invalid_search("filter: missing )")
        return node, rest[1:]
    if len(tokens) < 3 or not tokens[2].startswith('"'):
        raise invalid_search('filter: expected property operator "value"')
    attr, op, raw = tokens[0], tokens[1].lower(), tokens[2]
    value = re.sub(r"\\(.)", r"\1", raw[1:-1])
    return Clause(attr, op, value, _check(attr, op, value)), tokens[3:]


def _check(attr: str, op: str, value: str) -> int:
    """Refuse what Okta's filter does not take; returns the bound of a `lastUpdated` clause in milliseconds."""
    if attr not in ("id", "status", "lastUpdated", *_PROFILE):
        raise invalid_search(f"filter: cannot filter on {attr!r}")
    if op not in _ORDER or (op != "eq" and attr != "lastUpdated"):
        raise invalid_search(f"filter: operator {op!r} is not supported on {attr}")
    if attr != "lastUpdated":
        return 0
    try:
        return _ms(parse_iso(value))
    except ValueError:
        raise invalid_search(f"filter: {value!r} is not a date-time") from None
