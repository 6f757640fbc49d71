"""A small SCIM filter parser/evaluator (enough for what Okta and scim2-tester send).

Supports ``attr op value`` with eq ne co sw ew gt ge lt le, ``attr pr``, ``and``/``or``/``not``,
parentheses, dotted sub-attributes (``name.givenName``, ``emails.value``), URN-prefixed
attributes, and Okta's ``email`` alias for ``emails``. String comparison is case-insensitive.
Value filters inside brackets (``emails[type eq "work"]``) are not supported in filters
(they are supported in PATCH paths, see ``patch20``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

CORE_URNS = (
    "urn:ietf:params:scim:schemas:core:2.0:user",
    "urn:ietf:params:scim:schemas:core:2.0:group",
    "urn:scim:schemas:core:1.0",
)
ALIASES = {"email": "emails"}
OPS = {"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"}
_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[^\s()"]+)')


class FilterError(ValueError):
    pass


def split_urn(path: str, namespaces: set[str] = frozenset()) -> tuple[str | None, str]:
    """Return (extension namespace or None for core, attribute path)."""
    if not path.lower().startswith("urn:"):
        return None, path
    low = path.lower()
    for ns in sorted(namespaces, key=len, reverse=True):
        if low == ns.lower():
            return ns, ""
        if low.startswith(ns.lower() + ":"):
            return ns, path[len(ns) + 1:]
    ns, _, attr = path.rpartition(":")
    if ns.lower() in CORE_URNS:
        return None, attr
    return ns, attr


def get_key(obj: dict, name: str) -> str | None:
    """Find a key of ``obj`` case-insensitively."""
    low = ALIASES.get(name.lower(), name).lower()
    for key in obj:
        if key.lower() == low:
            return key
    return None


def values_at(resource: dict, path: str) -> list[Any]:
    ns, attr = split_urn(path, {k for k in resource if k.startswith("urn:")})
    container = resource
    if ns is not None:
        key = get_key(resource, ns)
        container = resource.get(key) if key else None
        if not isinstance(container, dict):
            return []
    head, _, sub = attr.partition(".")
    key = get_key(container, head)
    if key is None:
        return []
    value = container[key]
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, dict):
            sub_key = get_key(item, sub or "value")
            if sub_key is not None:
                out.append(item[sub_key])
        elif not sub:
            out.append(item)
    return [v for v in out if v is not None]


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        actual, expected = actual.lower(), expected.lower()
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op in ("co", "sw", "ew"):
        if not (isinstance(actual, str) and isinstance(expected, str)):
            return False
        return {"co": expected in actual, "sw": actual.startswith(expected),
                "ew": actual.endswith(expected)}[op]
    try:
        return {"gt": actual > expected, "ge": actual >= expected,
                "lt": actual < expected, "le": actual <= expected}[op]
    except TypeError:
        return False


Predicate = Callable[[dict], bool]


class _Parser:
    def __init__(self, text: str):
        self.tokens, pos = [], 0
        while text[pos:].strip():
            m = _TOKEN.match(text, pos)
            if not m:
                raise FilterError(f"Cannot parse filter: {text!r}")
            self.tokens.append(m.group(1))
            pos = m.end()
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise FilterError("Unexpected end of filter")
        self.pos += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.expr()
        if self.peek() is not None:
            raise FilterError(f"Unexpected token {self.peek()!r}")
        return pred

    def expr(self) -> Predicate:
        terms = [self.term()]
        while (self.peek() or "").lower() == "or":
            self.take()
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else (lambda r: any(t(r) for t in terms))

    def term(self) -> Predicate:
        factors = [self.factor()]
        while (self.peek() or "").lower() == "and":
            self.take()
            factors.append(self.factor())
        return factors[0] if len(factors) == 1 else (lambda r: all(f(r) for f in factors))

    def factor(self) -> Predicate:
        tok = self.take()
        if tok.lower() == "not":
            inner = self.factor()
            return lambda r: not inner(r)
        if tok == "(":
            inner = self.expr()
            if self.take() != ")":
                raise FilterError("Missing ')'")
            return inner
        if "[" in tok:
            raise FilterError("Value filters in brackets are not supported here")
        path, op = tok, self.take().lower()
        if op == "pr":
            return lambda r: bool(values_at(r, path))
        if op not in OPS:
            raise FilterError(f"Unknown operator {op!r}")
        raw = self.take()
        expected = json.loads(raw) if raw.startswith('"') else _literal(raw)
        if op == "ne":
            return lambda r: not any(_compare("eq", v, expected) for v in values_at(r, path))
        return lambda r: any(_compare(op, v, expected) for v in values_at(r, path))


def _literal(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise FilterError(f"Bad value {raw!r}") from exc


def compile_filter(text: str) -> Predicate:
    """Compile a SCIM filter into a predicate over a rendered resource dict."""
    return _Parser(text).parse()
