"""Shared fixtures: a private RabbitMQ vhost and a private MongoDB database per test that needs them.

The broker and the MongoDB-wire server are the real ones `make test` made sure of (scripts/deps.sh)."""

from __future__ import annotations

import os
import subprocess
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def rabbit_url() -> str:
    """A fresh vhost, so queues and messages of one test never meet another's."""
    vhost = f"test-{uuid.uuid4().hex[:10]}"
    user = urlsplit(RABBITMQ_URL).username or "guest"
    _ctl("add_vhost", vhost)
    _ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    parts = urlsplit(RABBITMQ_URL)
    yield urlunsplit((parts.scheme, parts.netloc, "/" + vhost, "", ""))
    _ctl("delete_vhost", vhost)


@pytest.fixture
def mongo_db() -> str:
    name = f"test_{uuid.uuid4().hex[:10]}"
    yield name
    from pymongo import MongoClient

    with MongoClient(MONGODB_URL, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)


SCIM2_SERVER_TOKEN = "scim2-server-t0ken"


def venv_tool(name: str) -> str:
    """A console script of the test dependencies (pyproject's ``test`` extra): missing is a set-up error."""
    from pathlib import Path
    import shutil
    import sys

    script = Path(sys.executable).with_name(name)
    found = str(script) if script.exists() else shutil.which(name)
    assert found, f"{name} is not installed: `make test` installs the test extra (pip install -e '.[test]')"
    return found


@pytest.fixture(scope="module")
def scim2_server():
    """PyPI's scim2-server (an independent SCIM 2.0 server, served at ``/``) as a real process."""
    from tests.harness.devstack import free_port, wait_http

    port = free_port()
    process = subprocess.Popen([venv_tool("scim2-server"), "--hostname", "127.0.0.1", "--port", str(port),
                                "--bearer-token", SCIM2_SERVER_TOKEN],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/ServiceProviderConfig", 30, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser():
    """One real headless Chromium per test module (tests/harness/browser.py: starting one takes about a second).
    Tests sharing it start from a known state: ``browser.delete_all_cookies()`` and a fresh ``browser.get(...)``.
    From an async test whose server runs in the test loop, call it through ``in_thread`` (see the harness)."""
    from tests.harness.browser import chromium

    with chromium() as driver:
        yield driver
