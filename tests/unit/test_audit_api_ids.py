"""The audit API refuses an id that is not Okta's 20-character form before it reaches the database (issue 9,
item 13)."""

from __future__ import annotations

import httpx
import pytest

from audit_recorder.api import create_api
from okta_bridge.apiauth import ApiTokens

TOKEN = "reader-token-0123456789abcdef"


class FakeStore:
    def __init__(self) -> None:
        self.queries: list[dict] = []

    async def page(self, filters, since, until, limit, after):
        self.queries.append(filters)
        return [], None


async def _get(params: dict) -> tuple[int, FakeStore]:
    store = FakeStore()
    app = create_api(store, ApiTokens.parse(f"siem:reader:{TOKEN}"), ["audit"])  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit") as client:
        answer = await client.get("/audit", params=params, headers={"Authorization": f"Bearer {TOKEN}"})
        return answer.status_code, store


@pytest.mark.parametrize("name", ["user", "group", "app"])
@pytest.mark.parametrize("bad", ["../../users/00u1xxxxxxxxxxxxxxxx", "00u1", '00u1xxxxxxxxxxxxxxx"', "x" * 21])
async def test_an_id_filter_that_is_not_an_okta_id_is_refused(name, bad):
    status, store = await _get({name: bad})
    assert status == 400 and store.queries == []


@pytest.mark.parametrize("params, message", [({"since": "yesterday"}, "since: Input should be a valid datetime"),
                                             ({"limit": "100000"}, "limit: Input should be less than or equal to 1000"),
                                             ({"status": "nope"}, "status: Input should be")])
async def test_a_bad_date_or_a_huge_page_is_a_400_naming_the_filter(params, message):
    store = FakeStore()
    app = create_api(store, ApiTokens.parse(f"siem:reader:{TOKEN}"), ["audit"])  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit") as client:
        answer = await client.get("/audit", params=params, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 400 and answer.json()["detail"].startswith(message), answer.text
    assert store.queries == []


async def test_okta_ids_are_accepted():
    status, store = await _get({"user": "00u1abcdEFGHijkl0x7Z", "app": "0oa1abcdEFGHijkl0x7Z",
                                "group": "00g1abcdEFGHijkl0x7Z"})
    assert status == 200
    assert store.queries[0]["okta_user_id"] == "00u1abcdEFGHijkl0x7Z"
