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
