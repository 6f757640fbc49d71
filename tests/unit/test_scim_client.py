"""ScimClient against httpx.MockTransport: request shapes of both dialects (okta-scim-protocol.md section 2),
error mapping, real-server quirks, and secrets that must never reach an error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from scim_dispatcher.adapters import (
    ScimAuthError,
    ScimClient,
    ScimConflictError,
    ScimError,
    ScimNotFoundError,
    ScimPermanentError,
    ScimTransientError,
    ScimUser,
    auth_headers,
)
from scim_dispatcher.adapters.scim_error_mapping import excerpt

BASE = "https://target.example/scim/v2"
TOKEN = "Bearer s3cr3t-t0ken-value"
PASSWORD = "Hunter2-password!"
CORE11 = "urn:scim:schemas:core:1.0"
CORE20 = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
JIRA = "urn:okta:jira:1.0:user"
SCIM_JSON = "application/scim+json"

ATTRIBUTES: dict[str, Any] = {
    "userName": "a@b.c",
    "name.givenName": "A",
    "name.familyName": "B",
    "emails": [{"value": "a@b.c", "type": "work", "primary": True}],
    "displayName": "A B",
    "locale": "en_US",
    "externalId": "00u1",
    "active": True,
    "password": PASSWORD,
    f"{JIRA}:department": "Eng",
    f"{ENTERPRISE}:employeeNumber": "42",
    f"{ENTERPRISE}:manager.value": "m-1",
}


class FakeTarget:
    """Answers each request with the next queued response and keeps what it received."""

    def __init__(self, *responses: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0)
        return answer(request) if callable(answer) else answer

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def scim(status: int, data: Any = None, *, media: str = SCIM_JSON, **headers: str) -> httpx.Response:
    content = b"" if data is None else json.dumps(data).encode()
    return httpx.Response(status, content=content, headers={"Content-Type": media, **headers})


def text(status: int, body: str, media: str = "text/plain") -> httpx.Response:
    return httpx.Response(status, content=body.encode(), headers={"Content-Type": media})


def user(uid: str = "u-1", user_name: str = "a@b.c", **extra: Any) -> dict[str, Any]:
    return {"schemas": [CORE20], "id": uid, "userName": user_name, "active": True, **extra}


def listing(*users: dict[str, Any]) -> dict[str, Any]:
    return {"totalResults": len(users), "startIndex": 1, "itemsPerPage": len(users), "Resources": list(users)}


def make(target: FakeTarget, version: str = "2.0", base: str = BASE, **kw: Any) -> ScimClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(target))
    return ScimClient(http, base, version, headers={"Authorization": TOKEN}, **kw)  # type: ignore[arg-type]


# --- request shapes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "media"), [("1.1", "application/json"), ("2.0", SCIM_JSON)])
async def test_find_user_sends_okta_search(version: str, media: str) -> None:
    target = FakeTarget(scim(200, listing(user())))
    found = await make(target, version).find_user("a@b.c")
    request = target.requests[0]
    assert request.method == "GET"
    assert str(request.url) == f"{BASE}/Users?filter=userName%20eq%20%22a%40b.c%22&startIndex=1&count=100"
    assert request.headers["User-Agent"] == "Okta SCIM Client 1.0.0"
    assert request.headers["Accept"] == media
    assert request.headers["Authorization"] == TOKEN
    assert "Content-Type" not in request.headers
    assert request.extensions["redacted_path"] == "/Users?filter=<redacted>&startIndex=1&count=100"
    assert found == ScimUser(id="u-1", user_name="a@b.c", active=True, raw={})


async def test_find_user_escapes_quotes_and_uses_unique_field() -> None:
    target = FakeTarget(scim(200, listing()))
    assert await make(target, unique_field="externalId").find_user('x"y\\z') is None
    assert target.requests[0].url.params["filter"] == 'externalId eq "x\\"y\\\\z"'


async def test_find_user_no_match_is_none_and_2_0_404_is_none() -> None:
    target = FakeTarget(scim(200, {"totalResults": 0, "Resources": []}), scim(404, {"detail": "nope"}))
    client = make(target)
    assert await client.find_user("a@b.c") is None
    assert await client.find_user("a@b.c") is None


async def test_find_user_1_1_404_is_an_error() -> None:
    target = FakeTarget(scim(404, {"Errors": [{"description": "no such endpoint", "code": 404}]}))
    with pytest.raises(ScimNotFoundError):
        await make(target, "1.1").find_user("a@b.c")


async def test_find_user_picks_the_case_insensitive_match_among_several() -> None:
    target = FakeTarget(scim(200, listing(user("u-1", "someone@else"), user("u-2", "A@B.C"))))
    found = await make(target).find_user("a@b.c")
    assert found is not None and found.id == "u-2"


async def test_find_user_prefers_the_exact_match() -> None:
    target = FakeTarget(scim(200, listing(user("u-1", "A@B.C"), user("u-2", "a@b.c"))))
    found = await make(target).find_user("a@b.c")
    assert found is not None and found.id == "u-2"


async def test_find_user_refuses_a_server_that_ignores_the_filter() -> None:
    target = FakeTarget(scim(200, listing(user("u-1", "x@y"), user("u-2", "z@y"))))
    with pytest.raises(ScimPermanentError, match="none with a matching userName") as info:
        await make(target).find_user("a@b.c")
    assert "a@b.c" not in str(info.value)


async def test_find_user_matches_a_multi_valued_unique_field() -> None:
    target = FakeTarget(scim(200, listing(user(emails=[{"value": "Work@B.c"}]))))
    found = await make(target, unique_field="emails.value").find_user("work@b.c")
    assert found is not None and found.id == "u-1"


async def test_create_user_1_1_body() -> None:
    target = FakeTarget(scim(201, {"id": "u-9", "userName": "a@b.c"}, media="application/json"))
    created = await make(target, "1.1").create_user(ATTRIBUTES)
    request = target.requests[0]
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/Users")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert target.body() == {
        "schemas": [CORE11, JIRA, ENTERPRISE],
        "userName": "a@b.c",
        "name": {"givenName": "A", "familyName": "B"},
        "emails": [{"value": "a@b.c", "type": "work", "primary": True}],
        "displayName": "A B",
        "locale": "en_US",
        "externalId": "00u1",
        "active": True,
        "password": PASSWORD,
        "groups": [],
        JIRA: {"department": "Eng"},
        ENTERPRISE: {"employeeNumber": "42", "manager": {"value": "m-1"}},
    }
    assert created.id == "u-9"


async def test_create_user_2_0_body() -> None:
    target = FakeTarget(scim(201, user("u-9")))
    await make(target).create_user(ATTRIBUTES)
    body = target.body()
    assert target.requests[0].headers["Content-Type"] == SCIM_JSON
    assert body["schemas"] == [CORE20, JIRA, ENTERPRISE]
    assert "groups" not in body
    assert body[ENTERPRISE] == {"employeeNumber": "42", "manager": {"value": "m-1"}}
    assert body["name"] == {"givenName": "A", "familyName": "B"}


async def test_create_user_core_urn_is_top_level_and_none_is_left_out() -> None:
    target = FakeTarget(scim(201, user("u-9")))
    await make(target).create_user({f"{CORE20}:userName": "a@b.c", "nickName": None})
    assert target.body() == {"schemas": [CORE20], "userName": "a@b.c"}


@pytest.mark.parametrize("answer", [scim(201), text(201, "   ", SCIM_JSON)])
async def test_create_user_empty_body_is_permanent(answer: httpx.Response) -> None:
    with pytest.raises(ScimPermanentError, match="create returned empty user"):
        await make(FakeTarget(answer)).create_user(ATTRIBUTES)


async def test_create_user_without_id_is_permanent() -> None:
    with pytest.raises(ScimPermanentError, match="without id"):
        await make(FakeTarget(scim(201, {"userName": "a@b.c"}))).create_user(ATTRIBUTES)


def read(resource: dict[str, Any], etag: str | None = None) -> ScimUser:
    return ScimUser.from_resource(resource, etag=etag)  # type: ignore[return-value]


MANAGED = {k: v for k, v in ATTRIBUTES.items() if k != "password"}


async def test_update_user_puts_whole_user_with_id_and_quotes_the_id() -> None:
    target = FakeTarget(scim(200, user("a@b.c/x")))
    replaced = await make(target, "1.1").update_user(read(user("a@b.c/x", groups=[{"value": "g1"}])), MANAGED)
    request = target.requests[0]
    assert request.method == "PUT"
    assert request.url.raw_path == b"/scim/v2/Users/a@b.c%2Fx"
    assert request.extensions["redacted_path"] == "/Users/{id}"
    body = target.body()
    assert body["id"] == "a@b.c/x" and body["schemas"][0] == CORE11
    assert "groups" not in body  # a PUT with groups: [] could empty memberships on some 1.1 servers
    assert replaced.id == "a@b.c/x"


async def test_update_user_accepts_204() -> None:
    replaced = await make(FakeTarget(scim(204))).update_user(read(user("u-1", "old")), {"userName": "a@b.c"})
    assert (replaced.id, replaced.user_name) == ("u-1", "a@b.c")


async def test_get_user() -> None:
    target = FakeTarget(scim(200, user("id 1", active=False), media="application/json"))
    got = await make(target).get_user("id 1")
    assert target.requests[0].url.raw_path == b"/scim/v2/Users/id%201"
    assert (got.id, got.active) == ("id 1", False)


async def test_get_user_1_1_group_type_object_does_not_crash() -> None:
    resource = {"id": "u-1", "userName": "a@b.c", "active": "false",
                "groups": [{"value": "g1", "display": "G", "type": {"value": "direct"}}]}
    got = await make(FakeTarget(scim(200, resource, media="application/json")), "1.1").get_user("u-1")
    assert got.active is False and got.raw["groups"][0]["type"] == {"value": "direct"}


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.1", {"schemas": [CORE11], "id": "u-1", "active": False}),
        ("2.0", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                 "Operations": [{"op": "replace", "value": {"active": False}}]}),
    ],
)
@pytest.mark.parametrize("answer", [scim(204), scim(200, user(active=False)), text(200, "OK")])
async def test_set_active_patch(version: str, expected: dict[str, Any], answer: httpx.Response) -> None:
    target = FakeTarget(answer)
    await make(target, version, deactivate_with="PATCH").set_active("u-1", False)
    assert [r.method for r in target.requests] == ["PATCH"]
    assert str(target.requests[0].url) == f"{BASE}/Users/u-1"
    assert target.body() == expected


async def test_set_active_put_fetches_and_puts_the_whole_user() -> None:
    current = user(meta={"version": 'W/"1"'}, name={"givenName": "A"})
    target = FakeTarget(scim(200, current), scim(200, user(active=False)))
    await make(target).set_active("u-1", False)
    assert [r.method for r in target.requests] == ["GET", "PUT"]
    assert target.body() == {"schemas": [CORE20], "id": "u-1", "userName": "a@b.c", "active": False,
                             "name": {"givenName": "A"}}


async def test_set_active_put_with_current_skips_the_get() -> None:
    current = ScimUser.from_resource({"id": "u-1", "userName": "a@b.c", "active": False})
    target = FakeTarget(scim(204))
    await make(target, "1.1").set_active("u-1", True, current=current)
    assert [r.method for r in target.requests] == ["PUT"]
    assert target.body() == {"schemas": [CORE11], "id": "u-1", "userName": "a@b.c", "active": True}


async def test_set_active_refuses_an_html_page_answering_200() -> None:
    target = FakeTarget(text(200, "<html><body>Sign in</body></html>", "text/html"))
    with pytest.raises(ScimPermanentError, match="not SCIM JSON"):
        await make(target, deactivate_with="PATCH").set_active("u-1", False)


@pytest.mark.parametrize(("version", "spc"), [("1.1", "/ServiceProviderConfigs"), ("2.0", "/ServiceProviderConfig")])
async def test_test_connection(version: str, spc: str) -> None:
    target = FakeTarget(scim(200, {"schemas": []}), scim(200, listing()))
    await make(target, version).test_connection()
    assert [str(r.url) for r in target.requests] == [f"{BASE}{spc}", f"{BASE}/Users?startIndex=1&count=2"]


async def test_test_connection_fails_without_service_provider_config() -> None:
    with pytest.raises(ScimNotFoundError, match="GET /ServiceProviderConfig -> 404"):
        await make(FakeTarget(text(404, "Not Found"))).test_connection()


async def test_base_url_trailing_slash() -> None:
    target = FakeTarget(scim(200, user()))
    await make(target, base=BASE + "/").get_user("u-1")
    assert str(target.requests[0].url) == f"{BASE}/Users/u-1"


# --- error mapping --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "kind", "message"),
    [
        (text(401, "Unauthorized"), ScimAuthError, "GET /Users/{id} -> 401 Unauthorized: Unauthorized (scim 2.0)"),
        (scim(403, {"detail": "no rights"}), ScimAuthError, "-> 403 Forbidden: no rights"),
        (scim(404, {"detail": "not here", "status": "404"}), ScimNotFoundError, "-> 404 Not Found: not here"),
        (scim(409, {"detail": "dup"}), ScimConflictError, "-> 409 Conflict: dup"),
        (scim(400, {"detail": "bad", "scimType": "invalidValue"}), ScimPermanentError, "-> 400 Bad Request: bad"),
        (scim(422, None), ScimPermanentError, "-> 422 Unprocessable"),
        (text(500, "boom"), ScimTransientError, "-> 500 Internal Server Error: boom"),
        (text(502, "<html><h1>Bad gateway</h1></html>", "text/html"), ScimTransientError, "Bad Gateway: Bad gateway"),
        (scim(408, None), ScimTransientError, "-> 408 Request Timeout"),
        (scim(429, None, **{"Retry-After": "7"}), ScimTransientError, "-> 429 Too Many Requests"),
        (text(200, "<html>login</html>", "text/html"), ScimPermanentError, "-> 200 OK (not SCIM JSON): login"),
        (scim(200, [1, 2]), ScimPermanentError, "not SCIM JSON"),
        (text(302, ""), ScimPermanentError, "-> 302 Found"),
    ],
)
async def test_status_mapping(answer: httpx.Response, kind: type[ScimError], message: str) -> None:
    with pytest.raises(kind) as info:
        await make(FakeTarget(answer)).get_user("u-1")
    assert type(info.value) is kind
    assert message in str(info.value)
    assert (info.value.method, info.value.path, info.value.version) == ("GET", "/Users/{id}", "2.0")


async def test_conflict_message_2_0() -> None:
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "detail": "User already exists",
            "status": 409, "scimType": "uniqueness"}
    with pytest.raises(ScimConflictError) as info:
        await make(FakeTarget(scim(409, body))).create_user({"userName": "x@y.z"})
    assert str(info.value) == "POST /Users -> 409 Conflict: User already exists (scim 2.0)"
    assert (info.value.status, info.value.detail, info.value.scim_type) == (409, "User already exists", "uniqueness")
    assert isinstance(info.value, ScimPermanentError)


async def test_conflict_message_1_1() -> None:
    body = {"Errors": [{"description": "User already exists", "code": 409}]}
    with pytest.raises(ScimConflictError) as info:
        await make(FakeTarget(scim(409, body, media="application/json")), "1.1").create_user({"userName": "x@y.z"})
    assert str(info.value) == "POST /Users -> 409 Conflict: User already exists (scim 1.1)"


async def test_retry_after_seconds_and_http_date() -> None:
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    later = "Wed, 21 Oct 2026 07:29:30 GMT"
    target = FakeTarget(
        scim(429, None, **{"Retry-After": "12"}), scim(503, None, **{"Retry-After": later, "Date": date})
    )
    client = make(target)
    for expected in (12.0, 90.0):
        with pytest.raises(ScimTransientError) as info:
            await client.get_user("u-1")
        assert info.value.retry_after_s == expected


class _Trickle(httpx.AsyncByteStream):
    """An answer whose body comes a little at a time, each gap shorter than the timeout."""

    async def __aiter__(self):
        for _ in range(6):
            await asyncio.sleep(0.1)
            yield b" "


async def test_an_answer_that_trickles_in_past_the_timeout_is_cut_off_there() -> None:
    """Each read waits less than the timeout, the whole answer longer: the request still ends at the timeout, so a
    partition's owner is never still writing when its lease can lapse."""
    target = FakeTarget(lambda r: httpx.Response(200, headers={"Content-Type": SCIM_JSON}, stream=_Trickle()))
    with pytest.raises(ScimTransientError) as info:  # without the bound: the whole answer, read as not SCIM JSON
        await make(target, timeout_s=0.25).get_user("u-1")
    assert "timed out after 0.25s" in str(info.value)


async def test_500_on_patch_of_a_missing_user_stays_transient() -> None:
    target = FakeTarget(scim(500, {"detail": "NullPointerException"}))
    with pytest.raises(ScimTransientError):
        await make(target, deactivate_with="PATCH").set_active("gone", False)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ReadTimeout("timed out"), "timed out after 30s"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "connection failed (ConnectError)"),
        (httpx.RemoteProtocolError("peer closed"), "connection failed (RemoteProtocolError)"),
    ],
)
async def test_transport_failures_are_transient(exc: Exception, reason: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(ScimTransientError) as info:
        await make(FakeTarget(fail)).find_user("a@b.c")
    assert str(info.value) == f"GET /Users?filter=<redacted>&startIndex=1&count=100 -> {reason} (scim 2.0)"
    assert info.value.status is None


def test_excerpt_strips_tags_and_keeps_200_chars() -> None:
    page = "<html><head><style>p{}</style><script>x()</script></head><body><h1>Service &amp; down</h1>" + "z" * 500
    short = excerpt(page)
    assert short.startswith("Service & down zzz") and len(short) == 200 and "<" not in short


# --- secrets never reach an error -----------------------------------------------------------------------------

SECRET_ECHO = f"token {TOKEN} password {PASSWORD} user a@b.c basic czNjcjN0OnA0c3N3MHJk"


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (text(401, SECRET_ECHO), ScimAuthError),
        (scim(404, {"detail": SECRET_ECHO}), ScimNotFoundError),
        (scim(409, {"Errors": [{"description": SECRET_ECHO, "code": 409}]}), ScimConflictError),
        (scim(400, {"detail": SECRET_ECHO}), ScimPermanentError),
        (text(200, f"<p>{SECRET_ECHO}</p>", "text/html"), ScimPermanentError),
        (text(503, SECRET_ECHO), ScimTransientError),
        (lambda r: (_ for _ in ()).throw(httpx.ConnectError(SECRET_ECHO)), ScimTransientError),
    ],
)
@pytest.mark.parametrize("operation", ["create", "replace", "find", "get", "deactivate"])
@pytest.mark.parametrize("version", ["1.1", "2.0"])
async def test_secrets_never_in_errors(answer: Any, kind: type[ScimError], operation: str, version: str) -> None:
    """The token, any other header value, the password sent and the userName looked up never show."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(FakeTarget(answer)))
    headers = {"Authorization": TOKEN, **auth_headers({"type": "header", "header_name": "X-Key", "value": "k3y-v4lue"})}
    client = ScimClient(http, BASE, version, headers=headers, deactivate_with="PATCH")  # type: ignore[arg-type]
    calls = {
        "create": lambda: client.create_user(ATTRIBUTES),
        "replace": lambda: client.update_user(read(user("a@b.c")), ATTRIBUTES),
        "find": lambda: client.find_user("a@b.c"),
        "get": lambda: client.get_user("a@b.c"),
        "deactivate": lambda: client.set_active("a@b.c", False),
    }
    if operation == "find" and version == "2.0" and kind is ScimNotFoundError:
        assert await calls[operation]() is None
        return
    with pytest.raises(kind) as info:
        await calls[operation]()
    rendered = str(info.value) + repr(info.value) + repr(vars(info.value))
    secrets = [TOKEN, "s3cr3t-t0ken-value", "k3y-v4lue", "a@b.c"]
    if operation in ("create", "replace"):
        secrets.append(PASSWORD)  # the only calls that carry one: the client cannot know any other
    for secret in secrets:
        assert secret not in rendered
    assert info.value.__cause__ is None  # an httpx exception holds the request, headers included
    assert info.value.__context__ is None or info.value.__suppress_context__


async def test_basic_credentials_never_in_errors() -> None:
    headers = auth_headers({"type": "basic", "username": "svc", "password": "p4ssw0rd"})
    token = headers["Authorization"].split()[1]
    http = httpx.AsyncClient(transport=httpx.MockTransport(FakeTarget(text(401, f"bad credentials {token}"))))
    with pytest.raises(ScimAuthError) as info:
        await ScimClient(http, BASE, "1.1", headers=headers).test_connection()
    assert token not in str(info.value) and token not in repr(info.value)


# --- auth headers ---------------------------------------------------------------------------------------------


def test_auth_headers() -> None:
    from pydantic import SecretStr

    assert auth_headers({"type": "none"}) == {}
    assert auth_headers(None) == {}
    assert auth_headers({"type": "header", "value": "Bearer t"}) == {"Authorization": "Bearer t"}
    assert auth_headers({"type": "header", "header_name": "X-Api-Key", "value": SecretStr("k")}) == {"X-Api-Key": "k"}
    assert auth_headers({"type": "basic", "username": "Aladdin", "password": "open sesame"}) == {
        "Authorization": "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    }

    class Model:
        def headers(self) -> dict[str, str]:
            return {"Authorization": "SSWS x"}

    assert auth_headers(Model()) == {"Authorization": "SSWS x"}
    with pytest.raises(ValueError, match="unknown auth type 'oauth'"):
        auth_headers({"type": "oauth"})
    with pytest.raises(ValueError, match="needs username and password"):
        auth_headers({"type": "basic", "username": "svc-user"})


def test_flat_attributes_that_collide_are_refused() -> None:
    from scim_dispatcher.adapters.scim_dialects import SCIM20, user_body

    with pytest.raises(ValueError, match="name.givenName"):
        user_body(SCIM20, {"name": "A B", "name.givenName": "A"})
    assert user_body(SCIM20, {"name": {"formatted": "A B"}, "name.givenName": "A"})["name"] == {
        "formatted": "A B", "givenName": "A"}


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported SCIM version"):
        ScimClient(httpx.AsyncClient(), BASE, "3.0")  # type: ignore[arg-type]


# --- updates keep what the bridge does not manage (RFC 7644 §3.5.1: PUT may replace the whole resource) ----------


def on_target(**extra: Any) -> dict[str, Any]:
    """A user as a target holds it after the bridge created it and someone added to it on the target."""
    return user(
        schemas=[CORE20, ENTERPRISE], name={"givenName": "Old", "familyName": "B", "middleName": "M"},
        phoneNumbers=[{"value": "+1 555 0100", "type": "work"}], roles=[{"value": "admin"}],
        entitlements=[{"value": "jira-software"}], title="Engineer",
        **{ENTERPRISE: {"employeeNumber": "7", "costCenter": "CC-9"}},
        groups=[{"value": "g1", "display": "devs"}], meta={"resourceType": "User", "version": 'W/"3"'},
        password="$2b$hash-the-server-should-never-return", **extra)


async def test_update_sets_managed_attributes_on_the_resource_read_and_keeps_the_rest() -> None:
    target = FakeTarget(scim(200, on_target()))
    await make(target).update_user(read(on_target()), {**MANAGED, "locale": None})
    body = target.body()
    assert body["phoneNumbers"] == [{"value": "+1 555 0100", "type": "work"}]
    assert body["roles"] == [{"value": "admin"}] and body["entitlements"] == [{"value": "jira-software"}]
    assert body["title"] == "Engineer"
    assert body["name"] == {"givenName": "A", "familyName": "B", "middleName": "M"}  # a sub-attribute kept
    assert body[ENTERPRISE] == {"employeeNumber": "42", "costCenter": "CC-9", "manager": {"value": "m-1"}}
    assert body[JIRA] == {"department": "Eng"} and body["schemas"] == [CORE20, ENTERPRISE, JIRA]
    assert body["emails"] == ATTRIBUTES["emails"] and body["externalId"] == "00u1"
    # read-only and write-only attributes are never sent back
    assert not {"meta", "groups", "password"} & set(body) and "locale" not in body


async def test_update_clears_a_managed_attribute_whose_value_is_gone_and_matches_names_case_insensitively() -> None:
    resource = user(UserName="a@b.c", Name={"GivenName": "A", "familyName": "B"}, locale="de_DE",
                    **{JIRA: {"department": "Eng"}})
    resource.pop("userName")
    target = FakeTarget(scim(200, resource))
    await make(target).update_user(read(resource), {"userName": "new@b.c", "name.givenName": None,
                                                    "locale": None, f"{JIRA}:department": None})
    body = target.body()
    assert body["UserName"] == "new@b.c" and "userName" not in body  # the target's own key, changed
    assert body["Name"] == {"familyName": "B"}
    assert "locale" not in body and JIRA not in body and JIRA not in body["schemas"]


@pytest.mark.parametrize(("header", "meta", "sent"), [
    ('"v7"', 'W/"6"', '"v7"'),  # the header wins over meta.version
    (None, 'W/"6"', 'W/"6"'),
    (None, None, None),  # no version: no condition
])
async def test_update_sends_if_match_with_the_version_the_read_gave(header: str | None, meta: str | None,
                                                                    sent: str | None) -> None:
    resource = user(**({"meta": {"version": meta}} if meta else {}))
    target = FakeTarget(scim(200, resource, **({"ETag": header} if header else {})), scim(200, resource))
    client = make(target)
    await client.update_user(await client.get_user("u-1"), {"displayName": "X"})
    assert target.requests[1].headers.get("If-Match") == sent


async def test_update_without_if_match_when_the_connector_turns_it_off() -> None:
    target = FakeTarget(scim(200, user()))
    await make(target, send_if_match=False).update_user(read(user(), etag='W/"1"'), {"displayName": "X"})
    assert "If-Match" not in target.requests[0].headers


async def test_a_412_reads_again_and_reapplies_on_what_changed_meanwhile() -> None:
    """Someone added a phone number on the target between the bridge's read and its write: it is kept."""
    changed = user(phoneNumbers=[{"value": "+1 555 0199"}], meta={"version": 'W/"4"'})
    target = FakeTarget(scim(412, {"detail": "version mismatch", "status": "412"}), scim(200, changed),
                        scim(200, changed))
    updated = await make(target).update_user(read(user(meta={"version": 'W/"3"'})), {"displayName": "New"})
    assert [(r.method, r.headers.get("If-Match")) for r in target.requests] == [
        ("PUT", 'W/"3"'), ("GET", None), ("PUT", 'W/"4"')]
    assert target.body()["phoneNumbers"] == [{"value": "+1 555 0199"}] and target.body()["displayName"] == "New"
    assert updated.id == "u-1"


async def test_412_on_every_attempt_is_a_transient_failure_and_nothing_is_overwritten() -> None:
    refused = scim(412, {"detail": "version mismatch", "status": "412"})
    target = FakeTarget(refused, scim(200, user(meta={"version": 'W/"4"'})), refused,
                        scim(200, user(meta={"version": 'W/"5"'})), refused)
    with pytest.raises(ScimTransientError) as info:
        await make(target).set_active("u-1", False, read(user(meta={"version": 'W/"3"'})))
    assert info.value.status == 412 and "changed on the target between read and write 3 times" in info.value.message
    assert [r.method for r in target.requests] == ["PUT", "GET", "PUT", "GET", "PUT"]


# --- what Okta's client sends: media type ---------------------------------------------------------------------


async def test_content_type_setting_replaces_scim_json_for_a_target_that_refuses_it() -> None:
    target = FakeTarget(scim(201, user(), media="application/json"))
    await make(target, content_type="application/json").create_user({"userName": "a@b.c"})
    request = target.requests[0]
    assert request.headers["Content-Type"] == "application/json" and request.headers["Accept"] == "application/json"


async def test_a_415_names_the_setting_that_fixes_it() -> None:
    target = FakeTarget(text(415, "Unsupported Media Type"))
    with pytest.raises(ScimPermanentError) as info:
        await make(target).create_user({"userName": "a@b.c"})
    assert info.value.status == 415 and "content_type: application/json" in info.value.message


def test_an_unknown_content_type_is_refused() -> None:
    with pytest.raises(ValueError, match="content_type"):
        make(FakeTarget(), content_type="text/xml")


# --- bad input: answers too large, listings that never end ----------------------------------------------------


def chunked(status: int, data: bytes) -> httpx.Response:
    """A streamed body without Content-Length, as a chunked answer comes."""
    async def body():
        for start in range(0, len(data), 4096):
            yield data[start:start + 4096]
    return httpx.Response(status, content=body(), headers={"Content-Type": SCIM_JSON})


@pytest.mark.parametrize("answer", [
    scim(200, user(title="x" * 5000)),  # Content-Length says so: not read at all
    chunked(200, json.dumps(user(title="x" * 5000)).encode()),  # no length: read up to the limit, then refused
])
async def test_an_answer_over_the_size_limit_is_a_clear_error(answer: httpx.Response) -> None:
    with pytest.raises(ScimPermanentError) as info:
        await make(FakeTarget(answer), max_response_bytes=4096).get_user("u-1")
    assert "answer too large" in info.value.message and "over 4096 bytes" in info.value.message


async def test_an_answer_within_the_limit_is_read_whole_when_streamed() -> None:
    got = await make(FakeTarget(chunked(200, json.dumps(user(title="x" * 5000)).encode()))).get_user("u-1")
    assert got.raw["title"] == "x" * 5000


async def test_a_listing_that_repeats_itself_is_an_error_not_a_short_list() -> None:
    page = {**listing(user("u-1"), user("u-2", "b@b.c")), "totalResults": 1000}
    target = FakeTarget(*(scim(200, page) for _ in range(3)))
    pages = []
    with pytest.raises(ScimPermanentError, match="ignores startIndex"):
        async for got in make(target).list_users(page_size=2):
            pages.append(got)
    assert len(pages) == 1 and len(target.requests) == 2


async def test_a_listing_that_never_ends_stops_at_the_page_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from scim_dispatcher.adapters import scim_client
    monkeypatch.setattr(scim_client, "MAX_PAGES", 5)
    served = iter(range(10**6))

    def endless(request: httpx.Request) -> httpx.Response:
        n = next(served)
        return scim(200, {"totalResults": 10**9, "Resources": [user(f"u-{n}", f"{n}@b.c")]})
    target = FakeTarget(*(endless for _ in range(10)))
    with pytest.raises(ScimPermanentError, match="more than 5 pages"):
        async for _ in make(target).list_users(page_size=1):
            pass
    assert len(target.requests) == 5
