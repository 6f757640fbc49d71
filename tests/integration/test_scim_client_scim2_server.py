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

    # set on the target, not managed by the bridge: survives the bridge's update (scim2-server's PUT replaces)
    await client._call("PATCH", f"/Users/{created.id}", "/Users/{id}", client._scrub, empty="", lax=True, body={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "phoneNumbers", "value": [{"value": "+1 555 0100", "type": "work"}]}]})
    managed = {k: v for k, v in _attributes(user_name).items() if k != "password"}
    current = await client.get_user(created.id)
    replaced = await client.update_user(current, {**managed, "displayName": "Countess"})
    assert replaced.raw["displayName"] == "Countess"
    stored = (await client.get_user(created.id)).raw
    assert stored["displayName"] == "Countess" and stored["phoneNumbers"][0]["value"] == "+1 555 0100"

    await client.set_active(created.id, False)  # PUT of the whole user, as wizard apps get it
    assert (await client.get_user(created.id)).active is False


async def test_a_change_made_on_the_target_after_the_read_is_not_overwritten(client: ScimClient) -> None:
    """scim2-server versions users (``meta.version``, ETag) and honours If-Match: the stale PUT is refused with 412,
    the client reads again and re-applies its change on top of the other one."""
    created = await client.create_user(_attributes("mary@example.org"))
    stale = await client.get_user(created.id)
    assert stale.etag
    await client._call("PATCH", f"/Users/{created.id}", "/Users/{id}", client._scrub, empty="", lax=True, body={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "nickName", "value": "Set on the target"}]})
    await client.update_user(stale, {"displayName": "Mary S."})
    stored = (await client.get_user(created.id)).raw
    assert stored["displayName"] == "Mary S." and stored["nickName"] == "Set on the target"


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
