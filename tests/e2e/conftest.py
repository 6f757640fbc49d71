from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Awaitable, Callable

import pytest

from tests.harness.devstack import DevStack


@pytest.fixture
def stack(tmp_path: Path, rabbit_url: str, mongo_db: str, request: pytest.FixtureRequest):
    s = DevStack(tmp_path / "stack", rabbitmq_url=rabbit_url, mongodb_db=mongo_db,
                 extra_env={"POLLER_IDLE_INTERVAL_S": "0.5", "POLLER_MIN_INTERVAL_S": "0.2"})
    yield s
    s.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(s.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


async def eventually(check: Callable[[], Awaitable[object]], timeout: float = 60.0, what: str = "condition"):
    """Waits for convergence (no timing assertion: the timeout only bounds a broken run)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout}s (last: {last!r})")


def jira_connector(stack: DevStack, app_id: str, version: str = "v1", **extra) -> dict:
    return {"okta_app_id": app_id, "name": "jira", "base_url": f"{stack.target_url}/scim/{version}/",
            "auth": {"type": "header", "header_name": "Authorization", "value_env": "DEMO_TARGET_TOKEN",
                     "value_prefix": "Bearer "}, "timeout_s": 5, **extra}
