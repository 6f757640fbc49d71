"""ScimGroupClient against real processes over real HTTP: the demo target (``/scim/v1`` and ``/scim/v2``, with
and without quirks) and PyPI's ``scim2-server`` (SCIM 2.0 at ``/``).

Seen on scim2-server 0.8.3: PATCH answers 204 without a body; member values are not checked against existing
users (an unknown id is stored as given) and removing an absent member is a silent 204, so neither a batch
refusal nor ``noTarget`` ever happens there; group displayNames are not unique (no 409 on a second create, as
RFC 7643 allows), so a bridge must find before it creates.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from demo_scim_target.admin_client import TargetAdmin
from demo_scim_target.process import RunningTarget, free_port, start_target
from scim_dispatcher.adapters import (
    ScimAuthError,
    ScimConflictError,
    ScimGroupClient,
    ScimGroupsUnsupportedError,
    ScimNotFoundError,
    ScimPermanentError,
    ScimTransientError,
    split_until_isolated,
)

pytestmark = pytest.mark.integration

TOKEN = "groups-it-t0ken"
from tests.conftest import SCIM2_SERVER_TOKEN  # noqa: E402
QUIRK_SETS = {
    "plain": (),
    "id-equals-username": ("id-equals-username",),
    "patch-204": ("patch-204",),
    "all-quirks": ("id-equals-username", "patch-204", "500-instead-of-404", "plain-text-401", "v2-application-json"),
}


def _user(user_name: str) -> dict[str, object]:
    return {
        "userName": user_name,
        "name.givenName": "Test",
        "name.familyName": user_name.split("@")[0].title(),
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "displayName": user_name,
        "active": True,
    }


async def _three_users(client: ScimGroupClient, tag: str) -> list[str]:
    return [(await client.create_user(_user(f"{name}.{tag}@example.org"))).id for name in ("ann", "bob", "cy")]


async def _group_lifecycle(client: ScimGroupClient, tag: str, *, unique_names: bool = True) -> None:
    """create, find, rename, add/remove members, replace, list, delete: the state read back after each step."""
    u1, u2, u3 = await _three_users(client, tag)
    name = f"Eng {tag}"
    assert await client.find_group(name) is None

    created = await client.create_group(name, "All engineers" if client.version == "1.1" else None)
    assert created.id and created.display_name == name and created.member_ids == ()
    found = await client.find_group(name.upper())  # filters and the pick are case-insensitive
    assert found is not None and found.id == created.id
    if unique_names:
        with pytest.raises(ScimConflictError):
            await client.create_group(name)
    else:  # displayName is not unique in RFC 7643: a second create succeeds and find refuses to guess
        twin = await client.create_group(name)
        with pytest.raises(ScimPermanentError, match="2 groups"):
            await client.find_group(name)
        await client.delete_group(twin.id)

    gid = created.id
    await client.rename_group(gid, f"Engineering {tag}")
    assert (await client.get_group(gid)).display_name == f"Engineering {tag}"
    assert (await client.find_group(f"engineering {tag}")).id == gid  # type: ignore[union-attr]
    assert await client.find_group(name) is None

    await client.add_members(gid, [u1, u2, u3])
    assert set((await client.get_group(gid)).member_ids) == {u1, u2, u3}
    await client.add_members(gid, [u1])  # already there: no duplicate
    assert sorted((await client.get_group(gid)).member_ids) == sorted([u1, u2, u3])

    await client.remove_members(gid, [u1, u3])
    assert (await client.get_group(gid)).member_ids == (u2,)
    await client.remove_members(gid, [u1])  # already absent
    assert (await client.get_group(gid)).member_ids == (u2,)

    await client.replace_members(gid, [u1, u3])
    assert set((await client.get_group(gid)).member_ids) == {u1, u3}
    await client.replace_members(gid, [])
    assert (await client.get_group(gid)).member_ids == ()

    assert gid in {g.id for g in await client.list_groups()}
    await client.delete_group(gid)
    with pytest.raises(ScimNotFoundError):
        await client.get_group(gid)
    assert await client.find_group(f"Engineering {tag}") is None


# -- the demo target ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=list(QUIRK_SETS), ids=list(QUIRK_SETS))
def demo(request: pytest.FixtureRequest) -> Iterator[RunningTarget]:
    args = [a for quirk in QUIRK_SETS[request.param] for a in ("--quirk", quirk)]
    with start_target(free_port(), TOKEN, args) as running:
        running.quirks = QUIRK_SETS[request.param]  # type: ignore[attr-defined]
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _demo_client(demo: RunningTarget, http: httpx.AsyncClient, version: str, **kw: object) -> ScimGroupClient:
    url = demo.scim_v1_url if version == "1.1" else demo.scim_v2_url
    return ScimGroupClient(http, url, version, headers=demo.auth_header, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["1.1", "2.0"])
@pytest.mark.parametrize("group_update", ["PATCH", "PUT"])
async def test_demo_target_group_lifecycle(
    demo: RunningTarget, http: httpx.AsyncClient, version: str, group_update: str
) -> None:
    client = _demo_client(demo, http, version, group_update=group_update)
    async with TargetAdmin(demo.base_url) as admin:
        since = await admin.last_seq()
        await _group_lifecycle(client, f"{version.replace('.', '')}{group_update.lower()}")
        patches = [r for r in await admin.requests(since) if r["method"] == "PATCH" and "/Groups/" in r["path"]]
    if group_update == "PATCH":
        expected = 204 if "patch-204" in demo.quirks else 200  # type: ignore[attr-defined]
        assert patches and {r["status"] for r in patches} == {expected}
    elif version == "1.1":
        assert patches == []  # PUT mode: read-modify-write only


@pytest.fixture(scope="module")
def demo_ids_are_names() -> Iterator[RunningTarget]:
    with start_target(free_port(), TOKEN, ["--quirk", "id-equals-username"]) as running:
        yield running


@pytest.fixture(scope="module")
def demo_plain() -> Iterator[RunningTarget]:
    with start_target(free_port(), TOKEN) as running:
        yield running


async def test_demo_target_ids_equal_names(demo_ids_are_names: RunningTarget, http: httpx.AsyncClient) -> None:
    client = _demo_client(demo_ids_are_names, http, "2.0")
    users = await _three_users(client, "ideq")
    assert users[0] == "ann.ideq@example.org"
    created = await client.create_group("Ops Team ideq")
    assert created.id == "Ops Team ideq"
    await client.add_members(created.id, users)
    assert (await client.find_group("ops team IDEQ")).member_ids == tuple(users)  # type: ignore[union-attr]
    await client.remove_members(created.id, [users[1]])
    assert (await client.get_group(created.id)).member_ids == (users[0], users[2])
    await client.delete_group(created.id)


@pytest.mark.parametrize("version", ["1.1", "2.0"])
async def test_demo_target_split_isolates_unknown_members(
    demo: RunningTarget, http: httpx.AsyncClient, version: str
) -> None:
    """The demo target refuses a whole PATCH (400) when one member does not exist."""
    client = _demo_client(demo, http, version)
    tag = f"split{version.replace('.', '')}"
    u1, u2, u3 = await _three_users(client, tag)
    gid = (await client.create_group(f"Split {tag}")).id
    done, failed = await split_until_isolated(
        lambda batch: client.add_members(gid, batch), [u1, "ghost-1", u2, "ghost-2", u3])
    assert done == [u1, u2, u3]
    assert [m for m, _ in failed] == ["ghost-1", "ghost-2"]
    assert all(e.status == 400 and "ghost" not in str(e) for _, e in failed)
    assert set((await client.get_group(gid)).member_ids) == {u1, u2, u3}
    await client.delete_group(gid)


@pytest.mark.parametrize("version", ["1.1", "2.0"])
async def test_demo_target_missing_group(demo: RunningTarget, http: httpx.AsyncClient, version: str) -> None:
    client = _demo_client(demo, http, version)
    with pytest.raises(ScimNotFoundError):
        await client.get_group("no-such-group")
    quirky = "500-instead-of-404" in demo.quirks  # type: ignore[attr-defined]
    with pytest.raises(ScimTransientError if quirky else ScimNotFoundError):
        await client.add_members("no-such-group", ["x"])
    with pytest.raises(ScimTransientError if quirky else ScimNotFoundError):
        await client.delete_group("no-such-group")


@pytest.mark.parametrize("version", ["1.1", "2.0"])
async def test_demo_target_wrong_token(demo: RunningTarget, http: httpx.AsyncClient, version: str) -> None:
    url = demo.scim_v1_url if version == "1.1" else demo.scim_v2_url
    client = ScimGroupClient(http, url, version, headers={"Authorization": "Bearer wr0ng-groups-token"})
    with pytest.raises(ScimAuthError) as info:
        await client.find_group("Eng")
    assert "wr0ng-groups-token" not in str(info.value) and TOKEN not in str(info.value)


@pytest.mark.parametrize("status", [404, 501])
async def test_demo_target_without_groups(demo_plain: RunningTarget, http: httpx.AsyncClient, status: int) -> None:
    client = _demo_client(demo_plain, http, "2.0")
    async with TargetAdmin(demo_plain.base_url) as admin:
        await admin.add_fault(status, path_regex=r"/Groups")
        try:
            with pytest.raises(ScimGroupsUnsupportedError, match="target does not support groups"):
                await client.create_group("Eng")
            with pytest.raises(ScimGroupsUnsupportedError):
                await client.find_group("Eng")
            with pytest.raises(ScimGroupsUnsupportedError):
                await client.list_groups()
        finally:
            await admin.clear_faults()


# -- PyPI's scim2-server (fixture `scim2_server` in tests/conftest.py) ------------------------------------------


@pytest.mark.parametrize("group_update", ["PATCH", "PUT"])
async def test_scim2_server_group_lifecycle(scim2_server: str, http: httpx.AsyncClient, group_update: str) -> None:
    client = ScimGroupClient(http, scim2_server, "2.0", headers={"Authorization": f"Bearer {SCIM2_SERVER_TOKEN}"},
                             group_update=group_update)  # type: ignore[arg-type]
    await _group_lifecycle(client, f"s2{group_update.lower()}", unique_names=False)


async def test_scim2_server_wrong_token(scim2_server: str, http: httpx.AsyncClient) -> None:
    client = ScimGroupClient(http, scim2_server, "2.0", headers={"Authorization": "Bearer wr0ng-groups-token"})
    with pytest.raises(ScimAuthError) as info:
        await client.create_group("Eng")
    assert "wr0ng-groups-token" not in str(info.value)
