"""ScimGroupClient against httpx.MockTransport: group request shapes of both dialects (okta-scim-protocol.md
section 2, group rows), real-server quirks, targets without groups, and batch splitting."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from scim_dispatcher.adapters import (
    GroupUpdate,
    ScimAuthError,
    ScimClient,
    ScimConflictError,
    ScimError,
    ScimGroup,
    ScimGroupClient,
    ScimGroupsUnsupportedError,
    ScimNotFoundError,
    ScimPermanentError,
    ScimTransientError,
    ScimUser,
    split_until_isolated,
)

BASE = "https://target.example/scim"
TOKEN = "Bearer gr0up-s3cr3t-token"
CORE11 = "urn:scim:schemas:core:1.0"
GROUP20 = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCHOP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
OKTA_GROUP = "urn:okta:custom:group:1.0"
SCIM_JSON = "application/scim+json"
FILTER = "/Groups?filter=displayName%20eq%20%22{}%22&startIndex=1&count=100"


class FakeTarget:
    """Answers each request with the next queued response (or a callable) and keeps what it received."""

    def __init__(self, *responses: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 or not callable(self.responses[0]) else \
            self.responses[0]
        return answer(request) if callable(answer) else answer

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def line(self, index: int = -1) -> str:
        request = self.requests[index]
        return f"{request.method} {str(request.url)[len(BASE):]}"


def scim(status: int, data: Any = None, *, media: str = SCIM_JSON) -> httpx.Response:
    content = b"" if data is None else json.dumps(data).encode()
    return httpx.Response(status, content=content, headers={"Content-Type": media})


def group(gid: str = "g-1", name: str = "Eng", members: list[str] = (), v: str = "2.0", **extra: Any) -> dict:
    schema = GROUP20 if v == "2.0" else CORE11
    out = {"schemas": [schema], "id": gid, "displayName": name, **extra}
    if members:
        out["members"] = [{"value": m, "display": f"{m}@x"} for m in members]
    return out


def listing(*groups: dict, total: int | None = None, start: int = 1) -> dict:
    return {"totalResults": len(groups) if total is None else total, "startIndex": start,
            "itemsPerPage": len(groups), "Resources": list(groups)}


def error20(status: int, detail: str = "bad", scim_type: str | None = None) -> dict:
    out: dict[str, Any] = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "detail": detail,
                           "status": str(status)}
    if scim_type:
        out["scimType"] = scim_type
    return out


def make(target: FakeTarget, version: str = "2.0", **kw: Any) -> tuple[ScimGroupClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(target))
    return ScimGroupClient(http, BASE, version, headers={"Authorization": TOKEN}, **kw), http


def client_for(*responses: Any, version: str = "2.0", **kw: Any) -> tuple[ScimGroupClient, FakeTarget]:
    target = FakeTarget(*responses)
    client, _ = make(target, version, **kw)
    return client, target


# -- construction ------------------------------------------------------------------------------------------------

def test_is_a_scim_client_and_checks_group_update() -> None:
    client, _ = client_for(scim(200, {}))
    assert isinstance(client, ScimClient) and client.group_update == "PATCH"
    with pytest.raises(ValueError, match="group_update"):
        ScimGroupClient(httpx.AsyncClient(), BASE, "2.0", group_update="POST")  # type: ignore[arg-type]


# -- find / get / list -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.1", "2.0"])
async def test_find_group_request_and_exact_pick(version: str) -> None:
    client, target = client_for(
        scim(200, listing(group("g-2", "ENG", v=version), group("g-1", "Eng", ["u1"], v=version))), version=version)
    found = await client.find_group("Eng")
    assert found == ScimGroup("g-1", "Eng", ("u1",))
    request = target.requests[0]
    assert target.line() == "GET " + FILTER.format("Eng")
    assert request.extensions["redacted_path"] == "/Groups?filter=<redacted>&startIndex=1&count=100"
    assert request.headers["User-Agent"] == "Okta SCIM Client 1.0.0"
    assert request.headers["Authorization"] == TOKEN
    assert request.headers["Accept"] == ("application/json" if version == "1.1" else SCIM_JSON)


async def test_find_group_case_insensitive_none_and_ambiguous() -> None:
    client, _ = client_for(scim(200, listing(group("g-1", "ENGINEERING"))),
                           scim(200, listing(total=0)),
                           scim(200, listing(group("a", "ENG"), group("b", "eng"))))
    assert (await client.find_group("Engineering")).id == "g-1"  # type: ignore[union-attr]
    assert await client.find_group("Nobody") is None
    with pytest.raises(ScimPermanentError, match="2 groups") as info:
        await client.find_group("Eng")
    assert "Eng" not in str(info.value).replace("2 groups with that displayName", "")


async def test_find_group_filter_escapes_quotes_and_backslashes() -> None:
    client, target = client_for(scim(200, listing(total=0)))
    await client.find_group('R&D "core" \\ team')
    assert "filter=displayName%20eq%20%22R%26D%20%5C%22core%5C%22%20%5C%5C%20team%22" in str(target.requests[0].url)


async def test_ids_equal_to_names_are_quoted_in_paths_and_redacted() -> None:
    client, target = client_for(scim(200, listing(group("Eng Team", "Eng Team", ["ann@x.org"]))),
                                scim(200, group("Eng Team", "Eng Team", ["ann@x.org"])),
                                scim(204))
    found = await client.find_group("Eng Team")
    assert found is not None and found.id == "Eng Team"
    fetched = await client.get_group(found.id)
    assert fetched.member_ids == ("ann@x.org",)
    await client.delete_group(found.id)
    assert target.line(1) == "GET /Groups/Eng%20Team" and target.line(2) == "DELETE /Groups/Eng%20Team"
    assert {r.extensions["redacted_path"] for r in target.requests[1:]} == {"/Groups/{id}"}


async def test_get_group_members_lax_shapes() -> None:
    raw = {"id": 7, "DisplayName": "Ops", "Members": [{"value": "a"}, "b", {"display": "no value"}, 3]}
    client, _ = client_for(scim(200, raw, media="application/json"))
    got = await client.get_group("7")
    assert (got.id, got.display_name, got.member_ids) == ("7", "Ops", ("a", "b", "3"))
    assert got.raw == raw


async def test_get_missing_group_is_not_found_without_the_id() -> None:
    client, _ = client_for(scim(404, error20(404, "Group sEcret-group-id not found")))
    with pytest.raises(ScimNotFoundError) as info:
        await client.get_group("sEcret-group-id")
    assert not isinstance(info.value, ScimGroupsUnsupportedError)
    assert str(info.value) == "GET /Groups/{id} -> 404 Not Found: Group *** not found (scim 2.0)"


async def test_list_groups_pages_to_total_results() -> None:
    pages = [listing(*(group(f"g{i}", f"G{i}") for i in range(s, min(s + 100, 250))), total=250, start=s + 1)
             for s in (0, 100, 200)]
    client, target = client_for(*(scim(200, p) for p in pages))
    groups = await client.list_groups()
    assert [g.id for g in groups] == [f"g{i}" for i in range(250)]
    assert [target.line(i) for i in range(3)] == [
        "GET /Groups?startIndex=1&count=100", "GET /Groups?startIndex=101&count=100",
        "GET /Groups?startIndex=201&count=100"]


async def test_list_groups_follows_short_pages_and_stops_on_ignored_start_index() -> None:
    capped = [listing(*(group(f"g{i}", f"G{i}") for i in range(s, s + 50)), total=120) for s in (0, 50)]
    capped.append(listing(*(group(f"g{i}", f"G{i}") for i in range(100, 120)), total=120))
    client, target = client_for(*(scim(200, p) for p in capped))
    assert len(await client.list_groups()) == 120
    assert target.line(1) == "GET /Groups?startIndex=51&count=100"
    assert target.line(2) == "GET /Groups?startIndex=101&count=100"

    same = listing(group("a", "A"), group("b", "B"), total=10)  # a server that ignores startIndex
    client, target = client_for(scim(200, same), scim(200, same), scim(200, same))
    assert [g.id for g in await client.list_groups()] == ["a", "b"]
    assert len(target.requests) == 2


# -- create ------------------------------------------------------------------------------------------------------

async def test_create_group_11_with_description() -> None:
    client, target = client_for(scim(201, group("g-1", "Eng", v="1.1"), media="application/json"), version="1.1")
    created = await client.create_group("Eng", "All engineers")
    assert created.id == "g-1"
    assert target.line() == "POST /Groups"
    assert target.body() == {"schemas": [CORE11, OKTA_GROUP], "displayName": "Eng",
                             OKTA_GROUP: {"description": "All engineers"}}
    assert target.requests[0].headers["Content-Type"] == "application/json"


async def test_create_group_11_without_description_and_20() -> None:
    client, target = client_for(scim(201, group(v="1.1")), version="1.1")
    await client.create_group("Eng")
    assert target.body() == {"schemas": [CORE11], "displayName": "Eng"}
    client, target = client_for(scim(201, group()))
    await client.create_group("Eng", "ignored in 2.0")
    assert target.body() == {"schemas": [GROUP20], "displayName": "Eng", "members": []}
    assert target.requests[0].headers["Content-Type"] == SCIM_JSON


async def test_create_group_empty_body_conflict_and_no_id() -> None:
    client, _ = client_for(scim(201), scim(409, error20(409, "Eng exists", "uniqueness")), scim(201, {"x": 1}))
    with pytest.raises(ScimPermanentError, match="create returned empty group"):
        await client.create_group("Eng")
    with pytest.raises(ScimConflictError) as info:
        await client.create_group("Eng")
    assert "Eng" not in str(info.value).replace("(scim 2.0)", "")
    with pytest.raises(ScimPermanentError, match="without id"):
        await client.create_group("Eng")


# -- rename ------------------------------------------------------------------------------------------------------

async def test_rename_patch_bodies() -> None:
    client, target = client_for(scim(200, group("g-1", "New", v="1.1")), version="1.1")
    update = await client.rename_group("g-1", "New")
    assert update.group is not None and update.group.display_name == "New"
    assert target.line() == "PATCH /Groups/g-1"
    assert target.body() == {"schemas": [CORE11], "id": "g-1", "displayName": "New"}

    client, target = client_for(scim(204))
    assert await client.rename_group("g-1", "New") == GroupUpdate()
    assert target.body() == {"schemas": [PATCHOP],
                             "Operations": [{"op": "replace", "value": {"id": "g-1", "displayName": "New"}}]}


@pytest.mark.parametrize("version", ["1.1", "2.0"])
async def test_rename_with_put_keeps_members_and_extensions(version: str) -> None:
    current = group("g-1", "Old", ["u1", "u2"], v=version, externalId="00g1",
                    meta={"version": 'W/"1"'}, **{OKTA_GROUP: {"description": "d"}})
    client, target = client_for(scim(200, current), scim(200, {**current, "displayName": "New"}),
                                version=version, group_update="PUT")
    update = await client.rename_group("g-1", "New")
    assert update.group is not None and update.group.display_name == "New"
    assert [target.line(0), target.line(1)] == ["GET /Groups/g-1", "PUT /Groups/g-1"]
    schema = GROUP20 if version == "2.0" else CORE11
    assert target.body() == {"schemas": [schema], "id": "g-1", "displayName": "New", "externalId": "00g1",
                             OKTA_GROUP: {"description": "d"},
                             "members": [{"value": "u1", "display": "u1@x"}, {"value": "u2", "display": "u2@x"}]}


# -- membership --------------------------------------------------------------------------------------------------

async def test_members_11_bodies() -> None:
    client, target = client_for(scim(200, group(v="1.1")), scim(204), version="1.1")
    await client.add_members("g-1", ["u1", "u2", "u1"])
    assert target.body(0) == {"schemas": [CORE11], "members": [{"value": "u1"}, {"value": "u2"}]}
    await client.remove_members("g-1", ["u1", "u2"])
    assert target.body(1) == {"schemas": [CORE11], "members": [
        {"value": "u1", "operation": "delete"}, {"value": "u2", "operation": "delete"}]}
    assert target.line(1) == "PATCH /Groups/g-1"


async def test_members_20_bodies() -> None:
    client, target = client_for(scim(204), scim(200, group(members=["u2"])), scim(204))
    await client.add_members("g-1", ["u1", "u2"])
    assert target.body(0) == {"schemas": [PATCHOP], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]}]}
    update = await client.remove_members("g-1", ["u1", 'od"d'])
    assert update.group is not None and update.group.member_ids == ("u2",)
    assert target.body(1) == {"schemas": [PATCHOP], "Operations": [
        {"op": "remove", "path": 'members[value eq "u1"]'},
        {"op": "remove", "path": 'members[value eq "od\\"d"]'}]}
    await client.replace_members("g-1", ["u3"])
    assert target.body(2) == {"schemas": [PATCHOP], "Operations": [
        {"op": "replace", "path": "members", "value": [{"value": "u3"}]}]}


@pytest.mark.parametrize("version", ["1.1", "2.0"])
async def test_members_carry_display_beside_value_as_okta_sends_them(version: str) -> None:
    """``display`` is the member's userName when the bridge knows it; a member it does not know goes as value."""
    names = {"u1": "ann@acme.com", "u2": "bob@acme.com"}
    client, target = client_for(scim(204), scim(204), scim(204), version=version)
    await client.add_members("g-1", ["u1", "u9"], display=names)
    await client.remove_members("g-1", ["u2"], display=names)
    if version == "1.1":
        assert target.body(0)["members"] == [{"value": "u1", "display": "ann@acme.com"}, {"value": "u9"}]
        assert target.body(1)["members"] == [{"value": "u2", "display": "bob@acme.com", "operation": "delete"}]
    else:
        assert target.body(0)["Operations"][0]["value"] == [{"value": "u1", "display": "ann@acme.com"},
                                                           {"value": "u9"}]
        await client.replace_members("g-1", ["u2"], display=names)
        assert target.body(2)["Operations"][0]["value"] == [{"value": "u2", "display": "bob@acme.com"}]


async def test_a_refused_member_batch_never_shows_the_display_names() -> None:
    client, _ = client_for(scim(400, error20(400, "members ann@acme.com unknown")))
    with pytest.raises(ScimPermanentError) as info:
        await client.add_members("g-1", ["u1"], display={"u1": "ann@acme.com"})
    assert "ann@acme.com" not in str(info.value)


async def test_put_mode_sends_if_match_and_rereads_on_412() -> None:
    """A member added on the target between the GET and the PUT is kept: the stale PUT is refused (412), the group
    read again and the change re-applied to it."""
    first = group("g-1", "Eng", ["u1"], meta={"version": 'W/"1"'})
    second = group("g-1", "Eng", ["u1", "u7"], meta={"version": 'W/"2"'})
    client, target = client_for(scim(200, first), scim(412, error20(412, "changed")), scim(200, second),
                                scim(204), group_update="PUT")
    await client.add_members("g-1", ["u2"], display={"u2": "bob@acme.com"})
    assert [(r.method, r.headers.get("If-Match")) for r in target.requests] == [
        ("GET", None), ("PUT", 'W/"1"'), ("GET", None), ("PUT", 'W/"2"')]
    assert target.body()["members"] == [{"value": "u1", "display": "u1@x"}, {"value": "u7", "display": "u7@x"},
                                        {"value": "u2", "display": "bob@acme.com"}]
    assert "meta" not in target.body()


async def test_put_mode_412_every_time_is_transient() -> None:
    current = group("g-1", "Eng", ["u1"], meta={"version": 'W/"1"'})
    refused = scim(412, error20(412, "changed"))
    client, target = client_for(scim(200, current), refused, scim(200, current), refused, scim(200, current),
                                refused, group_update="PUT")
    with pytest.raises(ScimTransientError) as info:
        await client.rename_group("g-1", "New")
    assert info.value.status == 412 and [r.method for r in target.requests] == ["GET", "PUT"] * 3


async def test_list_groups_that_never_ends_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from scim_dispatcher.adapters import scim_groups
    monkeypatch.setattr(scim_groups, "MAX_PAGES", 3)
    served = iter(range(10**6))

    def endless(request: httpx.Request) -> httpx.Response:
        n = next(served)
        return scim(200, listing(*(group(f"g-{n}-{i}", f"G{n}-{i}") for i in range(100)), total=10**9))
    client, target = client_for(endless)
    with pytest.raises(ScimPermanentError, match="more than 3 pages"):
        await client.list_groups()
    assert len(target.requests) == 3


async def test_empty_changes_send_nothing_but_replace_with_nobody_does() -> None:
    client, target = client_for(scim(204))
    assert await client.add_members("g-1", []) == GroupUpdate()
    assert await client.remove_members("g-1", []) == GroupUpdate()
    assert target.requests == []
    await client.replace_members("g-1", [])
    assert target.body()["Operations"] == [{"op": "replace", "path": "members", "value": []}]
    with pytest.raises(TypeError):
        await client.add_members("g-1", "u1")


async def test_replace_members_11_puts_the_whole_group() -> None:
    current = group("g-1", "Eng", ["u1", "u2"], v="1.1")
    client, target = client_for(scim(200, current), scim(204), version="1.1")
    await client.replace_members("g-1", ["u2", "u3"])
    assert [target.line(0), target.line(1)] == ["GET /Groups/g-1", "PUT /Groups/g-1"]
    assert target.body() == {"schemas": [CORE11], "id": "g-1", "displayName": "Eng",
                             "members": [{"value": "u2", "display": "u2@x"}, {"value": "u3"}]}


async def test_membership_with_put_mode_read_modify_write() -> None:
    current = group("g-1", "Eng", ["u1", "u2"])
    client, target = client_for(scim(200, current), scim(200, current), scim(200, current), scim(200, current),
                                group_update="PUT")
    await client.add_members("g-1", ["u2", "u3"])
    assert [m["value"] for m in target.body(1)["members"]] == ["u1", "u2", "u3"]
    await client.remove_members("g-1", ["u1"])
    assert [m["value"] for m in target.body(3)["members"]] == ["u2"]
    assert [r.method for r in target.requests] == ["GET", "PUT", "GET", "PUT"]


async def test_single_removal_answered_no_target_is_done() -> None:
    client, _ = client_for(scim(400, error20(400, "No value matches", "noTarget")))
    assert await client.remove_members("g-1", ["u1"]) == GroupUpdate(no_target=("u1",))


async def test_batch_removal_no_target_and_other_400_raise() -> None:
    client, _ = client_for(scim(400, error20(400, "No value matches", "noTarget")),
                           scim(400, error20(400, "Member does not exist", "invalidValue")))
    with pytest.raises(ScimPermanentError) as info:
        await client.remove_members("g-1", ["u1", "u2"])
    assert info.value.status == 400 and info.value.scim_type == "noTarget"
    with pytest.raises(ScimPermanentError):
        await client.remove_members("g-1", ["u1"])


# -- quirks and errors -------------------------------------------------------------------------------------------

async def test_patch_answers_204_or_200_with_body_or_odd_body() -> None:
    client, _ = client_for(scim(204), scim(200, group(members=["u1"]), media="application/json"),
                           httpx.Response(200, content=b"OK", headers={"Content-Type": "text/plain"}))
    assert (await client.add_members("g-1", ["u1"])).group is None
    assert (await client.add_members("g-1", ["u1"])).group.member_ids == ("u1",)  # type: ignore[union-attr]
    assert (await client.add_members("g-1", ["u1"])).group is None


async def test_500_on_patch_and_delete_is_transient_404_on_get_is_not_found() -> None:
    client, _ = client_for(scim(500, error20(500, "NullPointerException")), scim(500, {"error": "boom"}),
                           scim(404, error20(404, "not found")))
    with pytest.raises(ScimTransientError) as patch:
        await client.add_members("g-1", ["u1"])
    assert patch.value.path == "/Groups/{id}"
    with pytest.raises(ScimTransientError):
        await client.delete_group("g-1")
    with pytest.raises(ScimNotFoundError):
        await client.get_group("g-1")


async def test_delete_group_request_and_200_with_body() -> None:
    client, target = client_for(scim(204), scim(200, {"status": "deleted"}))
    await client.delete_group("g-1")
    await client.delete_group("g-1")
    assert target.line() == "DELETE /Groups/g-1" and target.requests[0].content == b""


async def test_plain_text_401_never_shows_the_token() -> None:
    body = f"Unauthorized: {TOKEN} rejected"
    client, _ = client_for(httpx.Response(401, content=body.encode(), headers={"Content-Type": "text/plain"}))
    with pytest.raises(ScimAuthError) as info:
        await client.create_group("Eng")
    assert "gr0up-s3cr3t-token" not in str(info.value)
    assert str(info.value).startswith("POST /Groups -> 401 Unauthorized")


@pytest.mark.parametrize("status", [404, 501])
async def test_target_without_groups_is_permanent_and_clear(status: int) -> None:
    html = httpx.Response(status, content=b"<html><body>Not Found</body></html>", headers={"Content-Type": "text/html"})
    client, _ = client_for(html, html)
    with pytest.raises(ScimGroupsUnsupportedError) as create:
        await client.create_group("Eng")
    assert isinstance(create.value, ScimPermanentError)
    assert "target does not support groups" in str(create.value)
    with pytest.raises(ScimGroupsUnsupportedError):
        await client.list_groups()


async def test_find_404_probes_the_collection() -> None:
    client, target = client_for(scim(404, error20(404, "no match")), scim(200, listing(total=3)),
                                scim(404, error20(404, "No such endpoint")), scim(404, error20(404, "nope")))
    assert await client.find_group("Eng") is None
    assert target.line(1) == "GET /Groups?startIndex=1&count=1"
    with pytest.raises(ScimGroupsUnsupportedError, match="does not support groups"):
        await client.find_group("Eng")


async def test_501_on_patch_is_unsupported_but_404_is_a_missing_group() -> None:
    client, _ = client_for(scim(501, error20(501, "PATCH not implemented")), scim(404, error20(404, "gone")))
    with pytest.raises(ScimGroupsUnsupportedError):
        await client.rename_group("g-1", "New")
    with pytest.raises(ScimNotFoundError) as missing:
        await client.rename_group("g-1", "New")
    assert not isinstance(missing.value, ScimGroupsUnsupportedError)


async def test_member_ids_and_names_are_scrubbed_from_details() -> None:
    detail = "member ann.smith@example.org cannot join Secret-Project (group gid-123456)"
    client, _ = client_for(scim(400, error20(400, detail)))
    with pytest.raises(ScimPermanentError) as info:
        await client.add_members("gid-123456", ["ann.smith@example.org"])
    text = str(info.value)
    assert "ann.smith" not in text and "gid-123456" not in text


# -- split_until_isolated ----------------------------------------------------------------------------------------

def _refusing(bad: set[str], calls: list[list[str]]) -> Callable[[list[str]], Any]:
    async def op(batch: list[str]) -> None:
        calls.append(list(batch))
        if bad & set(batch):
            raise ScimPermanentError("PATCH", "/Groups/{id}", 400, "bad member", version="2.0")
    return op


async def test_split_until_isolated_applies_the_others() -> None:
    members = [f"u{i}" for i in range(8)]
    calls: list[list[str]] = []
    done, failed = await split_until_isolated(_refusing({"u2", "u7"}, calls), members)
    assert done == ["u0", "u1", "u3", "u4", "u5", "u6"]
    assert [m for m, _ in failed] == ["u2", "u7"] and all(e.status == 400 for _, e in failed)
    applied = [c for c in calls if not {"u2", "u7"} & set(c)]
    assert sorted(m for c in applied for m in c) == done  # each good member applied exactly once
    assert len(calls) <= 2 * 2 * 3 + 1


async def test_split_until_isolated_all_good_is_one_call_and_empty_is_none() -> None:
    calls: list[list[str]] = []
    assert await split_until_isolated(_refusing(set(), calls), ["a", "b", "c"]) == (["a", "b", "c"], [])
    assert calls == [["a", "b", "c"]]
    assert await split_until_isolated(_refusing(set(), calls), []) == ([], [])
    assert len(calls) == 1


async def test_split_until_isolated_propagates_other_errors() -> None:
    async def op(batch: list[str]) -> None:
        raise ScimTransientError("PATCH", "/Groups/{id}", 503, None, version="2.0")
    with pytest.raises(ScimTransientError):
        await split_until_isolated(op, ["a", "b"])

    async def custom(batch: list[str]) -> None:
        if "x" in batch:
            raise ScimNotFoundError("PATCH", "/Groups/{id}", 404, None, version="2.0")
    done, failed = await split_until_isolated(custom, ["a", "x"], splittable=lambda e: e.status == 404)
    assert done == ["a"] and failed[0][0] == "x"


@pytest.mark.parametrize("version", ["1.1", "2.0"])
async def test_split_with_the_client_against_an_all_or_nothing_target(version: str) -> None:
    """A target that refuses the whole PATCH when any member is unknown, in both dialects."""
    known = {"u1", "u2", "u3", "u4"}

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if version == "1.1":
            values = {m["value"] for m in body["members"]}
        else:
            values = {m["value"] for op in body["Operations"] for m in op["value"]}
        if values - known:
            return scim(400, error20(400, "Member does not exist", "invalidValue"))
        return scim(204)

    target = FakeTarget(answer)
    client, _ = make(target, version)
    done, failed = await split_until_isolated(
        lambda batch: client.add_members("g-1", batch), ["u1", "ghost", "u2", "u3", "u4"])
    assert done == ["u1", "u2", "u3", "u4"]
    assert [m for m, _ in failed] == ["ghost"] and isinstance(failed[0][1], ScimError)


async def test_split_removal_treats_isolated_no_target_as_done() -> None:
    present = {"u1", "u3"}

    def answer(request: httpx.Request) -> httpx.Response:
        paths = [op["path"] for op in json.loads(request.content)["Operations"]]
        if any(p.split('"')[1] not in present for p in paths):
            return scim(400, error20(400, "No value matches", "noTarget"))
        return scim(204)

    client, _ = make(FakeTarget(answer))
    results: list[GroupUpdate] = []

    async def remove(batch: list[str]) -> None:
        results.append(await client.remove_members("g-1", batch))

    done, failed = await split_until_isolated(remove, ["u1", "u2", "u3"])
    assert done == ["u1", "u2", "u3"] and failed == []
    assert ("u2",) in [r.no_target for r in results]


async def test_the_group_client_updates_users_too() -> None:
    """The dispatcher's client for an app is a ScimGroupClient: its user update is the user read-modify-write."""
    resource = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u-1", "userName": "a@b.c",
                "title": "kept", "meta": {"version": 'W/"1"'}}
    client, target = client_for(scim(200, resource), scim(204), group_update="PUT")
    await client.update_user(ScimUser.from_resource(resource), {"displayName": "A"})
    assert target.line() == "PUT /Users/u-1" and target.requests[-1].headers["If-Match"] == 'W/"1"'
    assert target.body()["title"] == "kept" and target.body()["displayName"] == "A"
    await client.set_active("u-1", False, ScimUser.from_resource(resource))
    assert target.body()["active"] is False
