"""OktaClient over ``httpx.MockTransport``: rate-limit buckets, Link pagination, budget waits timed against Okta's
``Date`` header, error mapping, and a token that never reaches an error (brief section 3)."""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from okta_bridge import okta_client
from okta_bridge.okta_client import (OktaAuthError, OktaClient, OktaCursorRejectedError, OktaError,
                                     OktaNotFoundError, OktaRequestError, OktaTransientError, bucket_for)

ORG = "https://acme.okta.com"
TOKEN = "00aSSWS-t0ken-must-never-leak-zz"
SERVER_NOW = 1_577_836_800.0  # 2020-01-01T00:00:00Z: far from the local clock on purpose
DATE = email.utils.formatdate(SERVER_NOW, usegmt=True)


@pytest.mark.parametrize(("method", "path", "bucket"), [
    ("GET", "/api/v1/logs", "logs"),
    ("GET", "/api/v1/logs?since=x&after=y", "logs"),
    ("GET", "/api/v1/apps", "apps"),
    ("GET", "/api/v1/apps/0oa1", "app"),
    ("GET", "/api/v1/apps/0oa1/users", "apps"),
    ("GET", "/api/v1/apps/0oa1/users/00u1", "apps"),
    ("GET", "/api/v1/apps/0oa1/groups", "apps"),
    ("GET", "/api/v1/apps/0oa1/group-push/mappings", "apps"),
    ("POST", "/api/v1/apps/0oa1/users/00u1", "apps"),
    ("GET", "/api/v1/users/00u1", "user"),
    ("GET", "/api/v1/users/ann@acme.com", "user"),
    ("POST", "/api/v1/users/00u1", "users"),
    ("GET", "/api/v1/users", "users"),
    ("GET", "/api/v1/users/00u1/groups", "users"),
    ("GET", "/api/v1/groups", "groups"),
    ("GET", "/api/v1/groups/00g1", "group"),
    ("GET", "/api/v1/groups/00g1/users", "groups"),
])
def test_bucket_for_follows_the_rate_limit_table(method, path, bucket):
    assert bucket_for(method, path) == bucket


class FakeOkta:
    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        return answer(request) if callable(answer) else answer


def okta(status: int = 200, body: Any = None, *, remaining: int | None = None, reset_in: float = 30.0,
         limit: int = 100, links: list[str] = (), date: str | None = DATE, text: str | None = None) -> httpx.Response:
    headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
    if date:
        headers.append(("Date", date))
    if remaining is not None:
        headers += [("X-Rate-Limit-Limit", str(limit)), ("X-Rate-Limit-Remaining", str(remaining)),
                    ("X-Rate-Limit-Reset", str(int(SERVER_NOW + reset_in)))]
    headers += [("Link", link) for link in links]
    content = text.encode() if text is not None else (b"" if body is None else json.dumps(body).encode())
    return httpx.Response(status, content=content, headers=headers)


def client(fake: FakeOkta) -> OktaClient:
    return OktaClient(ORG, TOKEN, http=httpx.AsyncClient(transport=httpx.MockTransport(fake)))


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    waited: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(okta_client.asyncio, "sleep", fake_sleep)
    return waited


async def test_requests_carry_the_ssws_token():
    fake = FakeOkta(okta(body={"id": "00u1"}))
    assert await client(fake).get_user("00u1") == {"id": "00u1"}
    assert fake.requests[0].headers["Authorization"] == f"SSWS {TOKEN}"
    assert fake.requests[0].url == f"{ORG}/api/v1/users/00u1"


async def test_several_link_headers_are_all_parsed():
    nxt = f"{ORG}/api/v1/logs?after=1700000000000_1&limit=100&sortOrder=ASCENDING"
    fake = FakeOkta(okta(body=[], links=[f'<{ORG}/api/v1/logs?since=x&sortOrder=ASCENDING>; rel="self"',
                                         f'<{nxt}>; rel="next"']))
    page = await client(fake).get("/api/v1/logs")
    assert page.links == {"self": f"{ORG}/api/v1/logs?since=x&sortOrder=ASCENDING", "next": nxt}


async def test_links_in_one_comma_separated_header_are_parsed_too():
    fake = FakeOkta(okta(body=[], links=[f'<{ORG}/a?after=1>; rel="self", <{ORG}/a?after=2>; rel="next"']))
    page = await client(fake).get("/api/v1/logs")
    assert page.links == {"self": f"{ORG}/a?after=1", "next": f"{ORG}/a?after=2"}


async def test_list_app_users_follows_next_until_it_ends():
    second = f"{ORG}/api/v1/apps/0oa1/users?after=00u2&limit=500&expand=user"
    fake = FakeOkta(okta(body=[{"id": "00u1"}, {"id": "00u2"}], links=[f'<{second}>; rel="next"']),
                    okta(body=[{"id": "00u3"}]))
    pages = [page async for page in client(fake).list_app_users("0oa1")]
    assert [[u["id"] for u in p] for p in pages] == [["00u1", "00u2"], ["00u3"]]
    first = fake.requests[0].url
    assert first.path == "/api/v1/apps/0oa1/users"
    assert first.params["limit"] == "500" and first.params["expand"] == "user"
    assert str(fake.requests[1].url) == second


async def test_a_low_budget_waits_for_the_reset_timed_against_the_date_header(sleeps):
    """Okta's clock is 2020 here: a wait computed against the local clock would be zero."""
    fake = FakeOkta(okta(body={}, remaining=1, reset_in=30), okta(body={}))
    c = client(fake)
    await c.get("/api/v1/users/00u1")
    assert sleeps == []
    await c.get("/api/v1/users/00u2")
    assert len(sleeps) == 1
    assert 29.0 <= sleeps[0] <= 31.0
    assert len(fake.requests) == 2


async def test_a_healthy_budget_does_not_wait(sleeps):
    fake = FakeOkta(okta(body={}, remaining=50), okta(body={}, remaining=49), okta(body={}))
    c = client(fake)
    for _ in range(3):
        await c.get("/api/v1/users/00u1")
    assert sleeps == []


async def test_budgets_are_per_bucket(sleeps):
    fake = FakeOkta(okta(body=[], remaining=0), okta(body={}), okta(body={}))
    c = client(fake)
    await c.get("/api/v1/apps/0oa1/users")  # the small bucket is exhausted
    await c.get("/api/v1/users/00u1")  # the users bucket is not
    assert sleeps == []
    await c.get("/api/v1/apps/0oa1/users")
    assert len(sleeps) == 1


async def test_a_reset_already_past_on_oktas_clock_does_not_wait(sleeps):
    fake = FakeOkta(okta(body={}, remaining=0, reset_in=-5), okta(body={}))
    c = client(fake)
    await c.get("/api/v1/users/00u1")
    await c.get("/api/v1/users/00u1")
    assert sleeps == []


async def test_429_is_transient_with_the_wait_from_the_date_header():
    fake = FakeOkta(okta(429, {"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit"},
                         remaining=0, limit=0, reset_in=20))
    with pytest.raises(OktaTransientError) as info:
        await client(fake).get("/api/v1/users/00u1")
    assert info.value.status == 429
    assert 19.0 <= info.value.retry_after_s <= 21.0
    assert "E0000047" in str(info.value)


@pytest.mark.parametrize(("status", "path", "error"), [
    (404, "/api/v1/users/00u1", OktaNotFoundError),
    (404, "/api/v1/apps/0oa1/users/00u1", OktaNotFoundError),
    (400, "/api/v1/logs", OktaCursorRejectedError),
    (400, f"{ORG}/api/v1/logs?after=bogus&sortOrder=ASCENDING", OktaCursorRejectedError),
    (400, "/api/v1/users/00u1", OktaRequestError),
    (401, "/api/v1/users/00u1", OktaAuthError),
    (403, "/api/v1/logs", OktaAuthError),
    (500, "/api/v1/logs", OktaTransientError),
    (503, "/api/v1/users/00u1", OktaTransientError),
])
async def test_errors_map_to_the_hierarchy(status, path, error):
    fake = FakeOkta(okta(status, {"errorCode": "E0000001", "errorSummary": "Api validation failed"}))
    with pytest.raises(error) as info:
        await client(fake).get(path)
    assert info.value.status == status
    if error is OktaRequestError:
        assert not isinstance(info.value, OktaCursorRejectedError)


async def test_error_messages_carry_no_ids():
    fake = FakeOkta(okta(404, {"errorCode": "E0000007", "errorSummary": "Not found: Resource not found"}))
    with pytest.raises(OktaNotFoundError) as info:
        await client(fake).get("/api/v1/apps/0oa1/users/00u1secret")
    assert "00u1secret" not in str(info.value)
    assert "/api/v1/apps/{id}/users/{id}" in str(info.value)


async def test_transport_errors_are_transient_and_carry_no_token():
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect; headers were {dict(request.headers)}")

    with pytest.raises(OktaTransientError) as info:
        await client(FakeOkta(boom)).get("/api/v1/logs")
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("answer", [
    okta(401, text=f"Invalid token SSWS {TOKEN}"),  # a proxy echoing the request's header in plain text
    okta(500, text=f"<html>upstream error; Authorization: SSWS {TOKEN}</html>"),
    okta(401, {"errorCode": "E0000011", "errorSummary": f"Invalid token provided: {TOKEN}"}),
    okta(400, {"errorCode": "E0000001", "errorSummary": f"bad request from SSWS {TOKEN}"}),
])
async def test_the_token_never_appears_in_an_error_message(answer):
    with pytest.raises(OktaError) as info:
        await client(FakeOkta(answer)).get("/api/v1/logs")
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value.args)


@pytest.mark.parametrize("body", [[{"errorCode": "E0000009"}], "Internal Server Error", 42])
async def test_a_5xx_with_a_json_body_that_is_not_an_object_is_still_transient(body):
    with pytest.raises(OktaTransientError):
        await client(FakeOkta(okta(502, body))).get("/api/v1/logs")


async def test_calls_are_counted_per_bucket():
    c = client(FakeOkta(okta(body=[]), okta(body={}), okta(body={})))
    await c.get("/api/v1/logs")
    await c.get("/api/v1/users/00u1")
    await c.get("/api/v1/users/00u2")
    assert c.calls == {"logs": 1, "user": 2}


# ------------------------------------------------------------------ many users in one filtered listing

def _users_server(users: dict[str, dict], *, max_ids: int | None = None, status_over: int = 414,
                  page: int = 200, edit: Callable[[list[dict]], list[dict]] | None = None):
    """A GET /api/v1/users?filter=id eq "…" or … server; more than ``max_ids`` clauses answer ``status_over``."""
    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        flt = request.url.params.get("filter", "")
        ids = [part.split('"')[1] for part in flt.split(" or ")]
        seen.append(ids)
        if max_ids is not None and len(ids) > max_ids:
            return httpx.Response(status_over, json={"errorCode": "E0000001", "errorSummary": "too long"})
        found = [users[i] for i in ids if i in users]
        start = int(request.url.params.get("after") or 0)
        chunk = found[start:start + page]
        body = edit(chunk) if edit else chunk
        headers = {}
        if start + page < len(found):
            nxt = request.url.copy_set_param("after", str(start + page))
            headers["link"] = f'<{nxt}>; rel="next"'
        return httpx.Response(200, json=body, headers=headers)

    return handler, seen


def _user(i: int, updated: str = "2026-01-01T00:00:00.000Z") -> dict:
    return {"id": f"00u{i:04d}", "status": "ACTIVE", "lastUpdated": updated, "profile": {}}


async def test_users_by_id_are_read_in_filtered_listings_of_filter_ids_each():
    users = {u["id"]: u for u in (_user(i) for i in range(250))}
    handler, seen = _users_server(users)
    client = OktaClient(ORG, TOKEN, http=httpx.AsyncClient(transport=httpx.MockTransport(handler)), filter_ids=100)
    found = await client.list_users_by_ids(sorted(users))
    assert found == users
    assert sorted(len(ids) for ids in seen) == [50, 100, 100] and client.calls == {"users": 3}


async def test_a_listing_answered_414_or_400_is_split_until_it_passes():
    users = {u["id"]: u for u in (_user(i) for i in range(40))}
    for status in (414, 400):
        handler, seen = _users_server(users, max_ids=10, status_over=status)
        client = OktaClient(ORG, TOKEN, http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
                            filter_ids=40)
        assert await client.list_users_by_ids(sorted(users)) == users
        assert sorted(len(ids) for ids in seen) == [10, 10, 10, 10, 20, 20, 40]


async def test_an_answer_that_repeats_one_user_or_adds_one_not_asked_for_is_taken_with_care():
    users = {u["id"]: u for u in (_user(i) for i in range(3))}

    def edit(chunk: list[dict]) -> list[dict]:
        newer = dict(chunk[0], lastUpdated="2026-01-02T00:00:00.000Z")
        return [chunk[0], newer, *chunk[1:], _user(999)]

    handler, _ = _users_server(users, edit=edit)
    client = OktaClient(ORG, TOKEN, http=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    found = await client.list_users_by_ids(["00u0000", "00u0001", "00u0002", "00u0404"])
    assert sorted(found) == ["00u0000", "00u0001", "00u0002"]  # nothing for the one not asked for or not found
    assert found["00u0000"]["lastUpdated"] == "2026-01-02T00:00:00.000Z"  # a repeated id keeps its newest


async def test_a_listing_follows_next_links():
    users = {u["id"]: u for u in (_user(i) for i in range(30))}
    handler, seen = _users_server(users, page=10)
    client = OktaClient(ORG, TOKEN, http=httpx.AsyncClient(transport=httpx.MockTransport(handler)), filter_ids=100)
    assert await client.list_users_by_ids(sorted(users)) == users and len(seen) == 3


@pytest.mark.parametrize(("answer", "why"), [
    (okta(200), "is empty, not a user"),
    (okta(200, {"id": "00u1"}), "has no status"),
    (okta(200, {"id": "00u1", "status": "BOGUS"}), "status BOGUS, not one Okta documents"),
    (okta(200, {"id": "00u1", "status": {"x": 1}}), "status unreadable"),
    (okta(200, {"errorCode": "E0000007"}), "without that id"),
])
async def test_get_users_reads_only_a_404_as_gone_and_a_bad_answer_as_a_transient_error(answer, why):
    with pytest.raises(okta_client.OktaBadAnswerError, match=why) as caught:
        await client(FakeOkta(answer)).get_users(["00u1"])
    assert isinstance(caught.value, OktaTransientError) and caught.value.code.value == "okta_transient"
    assert await client(FakeOkta(okta(404, {"errorCode": "E0000007"}))).get_users(["00u1"]) == {"00u1": None}
    user = {"id": "00u1", "status": "RECOVERY"}
    assert await client(FakeOkta(okta(200, user))).get_users(["00u1"]) == {"00u1": user}


@pytest.mark.parametrize(("second", "kind"), [(okta(200, {}), "a JSON object"), (okta(200), "empty"),
                                              (okta(200, {"errorCode": "E0000009"}), "a JSON object")])
async def test_a_listing_page_that_is_not_a_list_is_a_bad_answer_not_an_empty_listing(second, kind):
    nxt = f"{ORG}/api/v1/apps/0oa1/users?after=00u1&limit=500&expand=user"
    fake = FakeOkta(okta(200, [{"id": "00u1"}], links=[f'<{nxt}>; rel="next"']), second)
    pages = []
    with pytest.raises(okta_client.OktaBadAnswerError, match=f"/api/v1/apps/{{id}}/users -> 200: the page is {kind}"):
        async for page in client(fake).list_app_users("0oa1"):
            pages.append(page)
    assert pages == [[{"id": "00u1"}]]


@pytest.mark.parametrize(("answer", "why"), [(okta(200), "is empty, not a group"),
                                             (okta(200, {"id": "00g1"}), "not that group with a profile"),
                                             (okta(200, {"id": "00g2", "profile": {}}), "not that group")])
async def test_get_group_reads_a_bad_answer_as_a_transient_error(answer, why):
    with pytest.raises(okta_client.OktaBadAnswerError, match=why):
        await client(FakeOkta(answer)).get_group("00g1")
    group = {"id": "00g1", "profile": {"name": "eng"}}
    assert await client(FakeOkta(okta(200, group))).get_group("00g1") == group


async def test_an_answer_over_the_size_limit_is_never_read_past_it_and_is_a_transient_error():
    """OKTA_MAX_RESPONSE_MB: a huge body (declared, or streamed without a length) stops the read at the limit; nothing
    of it is parsed, and the error is transient (the poller tries again; nobody is deactivated on it)."""
    from okta_bridge.okta_client import OktaTransientError

    served: list[int] = []

    class Endless(httpx.AsyncByteStream):
        async def __aiter__(self):
            for _ in range(1000):  # 1000 × 64 KiB would be 64 MiB: the read must stop long before
                served.append(1)
                yield b"[" + b" " * 65534 + b"]"

    def endless() -> Endless:
        return Endless()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/declared"):
            return httpx.Response(200, headers={"Content-Length": str(10 * 1024 * 1024)}, stream=endless())
        if request.url.path.endswith("/small"):
            return httpx.Response(200, json=[{"id": "00u1"}])
        return httpx.Response(200, stream=endless())

    client = OktaClient(ORG, TOKEN, http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
                        max_response_bytes=256 * 1024)
    with pytest.raises(OktaTransientError, match="over 262144 bytes; not read"):
        await client.get("/api/v1/users/streamed")
    assert len(served) <= 6  # stopped at the limit
    served.clear()
    with pytest.raises(OktaTransientError, match="OKTA_MAX_RESPONSE_MB"):
        await client.get("/api/v1/users/declared")
    assert len(served) <= 1  # a declared length over the limit: not read at all
    assert (await client.get("/api/v1/users/small")).body == [{"id": "00u1"}]
    with pytest.raises(ValueError):
        OktaClient(ORG, TOKEN, max_response_bytes=0)
