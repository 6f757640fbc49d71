"""Fault injection rules, applied by the ASGI middleware before routing.

A rule with a ``status`` short-circuits: the request is NOT processed and the rule's
answer is sent (``body`` as given, JSON-encoded if not a string; default a SCIM error body
of the dialect; ``empty_body`` sends no body at all). A rule without ``status`` lets the
request through (after ``delay_s``) and, if ``empty_body``, strips the real answer's body
(e.g. "user created but 201 with empty body"). ``times`` = how many matching requests the
rule applies to (None = until cleared). First matching rule wins.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from pydantic import BaseModel, Field, field_validator


class FaultRule(BaseModel):
    method: str | None = None
    path_regex: str | None = None
    status: int | None = Field(default=None, ge=100, le=599)
    body: Any = None
    content_type: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    delay_s: float = Field(default=0.0, ge=0.0)
    times: int | None = Field(default=None, ge=1)
    empty_body: bool = False
    id: int | None = None  # assigned by the server
    hits: int = 0

    @field_validator("path_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from exc
        return value

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return not self.path_regex or re.search(self.path_regex, path) is not None


class FaultSet:
    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(self, rules: list[FaultRule]) -> list[FaultRule]:
        for rule in rules:
            rule.id = next(self._ids)
            self.rules.append(rule)
        return rules

    def clear(self) -> None:
        self.rules.clear()

    def take(self, method: str, path: str) -> FaultRule | None:
        """Return the first matching rule and count the hit (dropping spent rules)."""
        for rule in self.rules:
            if rule.matches(method, path):
                rule.hits += 1
                if rule.times is not None and rule.hits >= rule.times:
                    self.rules.remove(rule)
                return rule
        return None
