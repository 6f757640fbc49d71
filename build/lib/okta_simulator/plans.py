"""Rate-limit plans and endpoint groups (brief section 3; ODD `docs/reference/rl-global-mgmt`)."""
from __future__ import annotations

import re

BUCKETS = ("logs", "apps", "app", "user", "users", "groups", "group", "other")

# per-minute limits: developer_free / developer_paid / one_app / enterprise / workforce
_TABLE = {
    "logs": (20, 25, 25, 50, 120),
    "apps": (20, 25, 25, 100, 100),
    "app": (100, 300, 300, 600, 500),
    "user": (100, 300, 300, 1000, 2000),
    # create or list users (`/api/v1/users` itself, any method): Okta documents 600 for Enterprise and Workforce
    # only; the developer and one-app plans give no figure, so they take their `other` values.
    "users": (100, 300, 300, 600, 600),
    "groups": (100, 300, 300, 600, 500),
    "group": (100, 300, 300, 600, 1000),
    "other": (100, 300, 300, 600, 600),
}
_ORDER = ("developer_free", "developer_paid", "one_app", "enterprise", "workforce")
PLANS: dict[str, dict[str, int]] = {
    plan: {bucket: limits[i] for bucket, limits in _TABLE.items()} for i, plan in enumerate(_ORDER)
}
PLANS["generous"] = {bucket: 100_000 for bucket in BUCKETS}

_APP_ITSELF = re.compile(r"^/api/v1/apps/[^/]+/?$")
_GROUP_ITSELF = re.compile(r"^/api/v1/groups/[^/]+/?$")
_USER_ITSELF = re.compile(r"^/api/v1/users/[^/]+/?$")


def bucket_for(method: str, path: str) -> str:
    """The endpoint group a request counts against."""
    if path.rstrip("/") == "/api/v1/logs":
        return "logs"
    if _APP_ITSELF.match(path):
        return "app"
    if path.startswith("/api/v1/apps"):
        return "apps"
    if path.rstrip("/") == "/api/v1/users":
        return "users"
    if method == "GET" and _USER_ITSELF.match(path):
        return "user"
    if _GROUP_ITSELF.match(path):
        return "group"
    if path.startswith("/api/v1/groups"):
        return "groups"
    return "other"
