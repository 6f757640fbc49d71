"""ScimClient (SCIM 2.0) against PyPI's ``scim2-server``, run as a real process over real HTTP.

Quirks of scim2-server 0.8.3 seen here: ``/ServiceProviderConfig`` answers without the bearer token (RFC 7644
allows it), so only the ``/Users`` listing of ``test_connection`` proves the token; userName is matched
case-insensitively (``caseExact: false``) by the filter and by the uniqueness check; Error ``status`` is a string
("409"); PATCH answers 204 with no body; it serves HTTP/1.0 from a single-threaded WSGI server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from scim_dispatcher.adapters import ScimAuthError, ScimClient, ScimConflictError, ScimNotFoundError

pytestmark = pytest.mark.integration

from tests.conftest import SCIM2_SERVER_TOKEN as TOKEN


@pytest.fixture
async def client(scim2_server: str) -> AsyncIterator[ScimClient]:
    async with httpx.AsyncClient() as http:
        yield ScimClient(http, scim2_server, "2.0", headers={"Authorization": f"Bearer {TOKEN}"})


def _attributes(user_name: str) -> dict[str, object]:
    return {
        "userName": user_name,
        "name.givenName": "Ada",
        "name.familyName": "Lovelace",
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "displayName": "Ada Lovelace",
        "locale": "en_US",
        "externalId": "00u1ada",
        "active": True,
        "password": "Ch4nge-me!",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "42",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value": "boss-1",
    }


async def test_connection(client: ScimClient) -> None:
    await client.test_connection()


async def test_wrong_token_is_an_auth_error(scim2_server: str) -> None:
    async with httpx.AsyncClient() as http:
        bad = ScimClient(http, scim2_server, "2.0", headers={"Authorization": "Bearer wrong-t0ken"})
        with pytest.raises(ScimAuthError) as info:
            await bad.test_connection()
    assert "wrong-t0ken" not in str(info.value)
    assert str(info.value).startswith("GET /Users?startIndex=1&count=2 -> 401 Unauthorized")


async def test_user_lifecycle(client: ScimClient) -> None:
    user_name = "ada@example.org"
    assert await client.find_user(user_name) is None

    created = await client.create_user(_attributes(user_name))
    assert created.id and created.user_name == user_name and created.active is True
    enterprise = created.raw["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]
    assert enterprise == {"employeeNumber": "42", "manager": {"value": "boss-1"}}

    found = await client.find_user("ADA@example.org")  # matched case-insensitively, like Okta's lookups
    assert found is not None and found.id == created.id

    with pytest.raises(ScimConflictError) as conflict:
        await client.create_user(_attributes(user_name))
    assert conflict.value.status == 409 and conflict.value.scim_type == "uniqueness"
    assert user_name not in str(conflict.value) and "Ch4nge-me!" not in str(conflict.value)

    replaced = await client.replace_user(created.id, {**_attributes(user_name), "displayName": "Countess"})
    assert replaced.raw["displayName"] == "Countess"
    assert (await client.get_user(created.id)).raw["displayName"] == "Countess"

    await client.set_active(created.id, False)  # PUT of the whole user, as wizard apps get it
    assert (await client.get_user(created.id)).active is False


async def test_deactivate_and_reactivate_with_patch(scim2_server: str) -> None:
    async with httpx.AsyncClient() as http:
        client = ScimClient(
            http, scim2_server, "2.0", headers={"Authorization": f"Bearer {TOKEN}"}, deactivate_with="PATCH"
        )
        created = await client.create_user(_attributes("grace@example.org"))
        await client.set_active(created.id, False)
        assert (await client.get_user(created.id)).active is False
        await client.set_active(created.id, True)
        assert (await client.get_user(created.id)).active is True


async def test_missing_user(client: ScimClient) -> None:
    with pytest.raises(ScimNotFoundError) as info:
        await client.get_user("no-such-user")
    assert info.value.path == "/Users/{id}"
    assert "no-such-user" not in str(info.value)  # scim2-server echoes the id in its detail
