"""A small SCIM filter evaluator for System Log events: `eventType eq "x" or (target.id eq "y" and actor.id sw "z")`."""
from __future__ import annotations

import re
from typing import Callable

from .errors import invalid

Predicate = Callable[[dict], bool]
_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[A-Za-z_][\w.]*)')
_OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "sw": lambda a, b: isinstance(a, str) and a.startswith(b),
    "co": lambda a, b: isinstance(a, str) and b in a,
}


def _values(event: dict, path: str) -> list:
    current: list = [event]
    for part in path.split("."):
        nxt: list = []
        for item in current:
            value = item.get(part) if isinstance(item, dict) else None
            nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    return current


def _tokens(text: str) -> list[str]:
    pos, out = 0, []
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m:
            raise invalid(f"filter: cannot parse at {text[pos:pos + 20]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_filter(text: str | None) -> Predicate:
    if not text or not text.strip():
        return lambda _e: True
    tokens = _tokens(text)
    pred, rest = _or(tokens)
    if rest:
        raise invalid(f"filter: unexpected {rest[0]!r}")
    return pred


def _or(tokens: list[str]) -> tuple[Predicate, list[str]]:
    left, rest = _and(tokens)
    while rest and rest[0].lower() == "or":
        right, rest = _and(rest[1:])
        left = (lambda a, b: lambda e: a(e) or b(e))(left, right)
    return left, rest


def _and(tokens: list[str]) -> tuple[Predicate, list[str]]:
    left, rest = _atom(tokens)
    while rest and rest[0].lower() == "and":
        right, rest = _atom(rest[1:])
        left = (lambda a, b: lambda e: a(e) and b(e))(left, right)
    return left, rest


def _atom(tokens: list[str]) -> tuple[Predicate, list[str]]:
    if tokens and tokens[0] == "(":
        pred, rest = _or(tokens[1:])
        if not rest or rest[0] != ")":
            raise invalid("filter: missing )")
        return pred, rest[1:]
    if len(tokens) < 3 or tokens[1].lower() not in _OPS or not tokens[2].startswith('"'):
        raise invalid("filter: expected attribute operator \"value\"")
    path, op, value = tokens[0], _OPS[tokens[1].lower()], tokens[2][1:-1].replace('\\"', '"')
    return (lambda e: any(op(v, value) for v in _values(e, path))), tokens[3:]
