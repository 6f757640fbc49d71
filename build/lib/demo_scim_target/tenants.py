"""Tenants: besides `/scim/v1/…` and `/scim/v2/…` (the tenant ``default``), `/t/{tenant}/scim/v1/…` and
`/t/{tenant}/scim/v2/…` serve a tenant of their own, with a separate in-memory store created on first use.
A name is ``[A-Za-z0-9_-]+``; `/t/default/scim/…` is the default tenant under another path.

The middleware strips nothing: the request keeps its full path (logs and fault rules see it) and gets
``root_path = "/t/{tenant}"``, so routing sees `/scim/…` and every URL the target builds (``meta.location``)
keeps the tenant's prefix.
"""

from __future__ import annotations

import re
from typing import Callable

from .store import Store

DEFAULT = "default"
ALL = "*"  # every tenant (admin reset; the global figure of /_admin/inflight)
SCOPE_KEY = "demo_scim_target.tenant"
NAME = re.compile(r"[A-Za-z0-9_-]+")
_PREFIX = re.compile(r"/t/([A-Za-z0-9_-]+)(?=/scim/v[12](?:/|$))")


def split_tenant(path: str) -> tuple[str, str]:
    """``("acme", "/t/acme")`` for `/t/acme/scim/v2/Users`; ``("default", "")`` for any other path."""
    match = _PREFIX.match(path)
    return (match.group(1), match.group(0)) if match else (DEFAULT, "")


def valid_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None


class Tenants:
    """The stores by tenant name; the default tenant's store is the one given."""

    def __init__(self, default: Store, make: Callable[[], Store]) -> None:
        self._stores: dict[str, Store] = {DEFAULT: default}
        self._make = make

    def store(self, name: str) -> Store:
        if name not in self._stores:
            self._stores[name] = self._make()
        return self._stores[name]

    def names(self) -> list[str]:
        return list(self._stores)
