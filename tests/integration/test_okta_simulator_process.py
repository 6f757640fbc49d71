"""The simulator as a real process: admin client writes, the System Log is polled over HTTP."""
from __future__ import annotations

import httpx
import pytest

from okta_simulator import SimulatorAdmin, start_simulator

pytestmark = pytest.mark.integration
TOKEN = "proc-token"
TOKEN_ID = "00Tprocess0000000001"


@pytest.fixture(scope="module")
def simulator():
    with start_simulator(plan="workforce", tokens=[f"{TOKEN}:{TOKEN_ID}"]) as running:
        yield running


async def test_poll_log_over_http_after_admin_changes(simulator):
    headers = {"Authorization": f"SSWS {TOKEN}"}
    async with SimulatorAdmin(simulator.base_url) as admin, \
            httpx.AsyncClient(base_url=simulator.base_url, headers=headers) as okta:
        await admin.reset()
        first = await okta.get("/api/v1/logs", params={"sortOrder": "ASCENDING"})
        assert first.status_code == 200 and first.json() == []
        assert first.headers["x-rate-limit-limit"] == "60" and "date" in first.headers
        next_url = first.links["next"]["url"]

        user = await admin.create_user({"login": "dana@example.com", "firstName": "Dana", "lastName": "D"})
        app = await admin.create_app("Process App")
        app_user = await admin.assign_user(app, user, "dana")
        page = await okta.get(next_url)
        events = page.json()
        assert [e["eventType"] for e in events] == [
            "user.lifecycle.create", "user.lifecycle.activate", "application.lifecycle.create",
            "application.user_membership.add"]
        assert [t["id"] for t in events[-1]["target"]] == [app_user, app, user]

        r = await okta.post(f"/api/v1/apps/{app}/users/{user}", json={"profile": {"role": "dev"}})
        assert r.status_code == 200
        later = (await okta.get(page.links["next"]["url"])).json()
        assert [e["eventType"] for e in later] == ["application.user_membership.update"]
        assert later[0]["transaction"]["detail"]["requestApiTokenId"] == TOKEN_ID

        stats = await admin.stats()
        assert stats["calls"]["logs"][TOKEN_ID] == 3 and stats["calls"]["apps"][TOKEN_ID] == 1


async def test_faults_over_http(simulator):
    async with SimulatorAdmin(simulator.base_url) as admin, \
            httpx.AsyncClient(base_url=simulator.base_url, headers={"Authorization": f"SSWS {TOKEN}"}) as okta:
        await admin.reset()
        await admin.inject("logs", 503, 1)
        assert (await okta.get("/api/v1/logs")).status_code == 503
        first = await okta.get("/api/v1/logs")
        await admin.reject_cursors()
        rejected = await okta.get(first.links["next"]["url"])
        assert rejected.status_code == 400 and rejected.json()["errorCode"] == "E0000001"
        assert (await okta.get("/api/v1/logs", headers={"Authorization": "SSWS nope"})).status_code == 401


async def test_users_listing_bulk_admin_and_url_limit_over_http(simulator):
    async with SimulatorAdmin(simulator.base_url) as admin, \
            httpx.AsyncClient(base_url=simulator.base_url, headers={"Authorization": f"SSWS {TOKEN}"}) as okta:
        await admin.reset()
        ids = await admin.create_users([{"login": f"bulk{i}@example.com", "lastName": "Bulk"} for i in range(600)])
        app = await admin.create_app("Bulk App")
        assert await admin.assign_users(app, ids) == 600
        adds = [e for e in await admin.events() if e["eventType"] == "application.user_membership.add"]
        assert [e["target"][2]["id"] for e in adds] == ids

        seen, url, params = [], "/api/v1/users", {"filter": 'profile.lastName eq "Bulk"'}
        while url:
            page = await okta.get(url, params=params)
            assert page.status_code == 200 and page.headers["x-rate-limit-limit"] == "300"
            seen += [u["id"] for u in page.json()]
            url, params = page.links.get("next", {}).get("url"), None
        assert seen == sorted(ids)
        assert (await admin.stats())["callsByBucket"]["users"] == 3

        await admin.inject("users", None, edit="drop_first")
        dropped = await okta.get("/api/v1/users", params={"filter": f'id eq "{ids[0]}" or id eq "{ids[1]}"'})
        assert [u["id"] for u in dropped.json()] == sorted(ids[:2])[1:]

        many = {"filter": " or ".join(f'id eq "{i}"' for i in ids[:200]), "limit": 200}  # about 5,000 bytes
        assert (await okta.get("/api/v1/users", params=many)).status_code == 200
        assert await admin.set_max_url_bytes(4096) == 4096
        refused = await okta.get("/api/v1/users", params=many)
        assert refused.status_code == 414 and refused.json()["errorCauses"]
        assert await admin.set_max_url_bytes(100_000) == 100_000  # beyond h11's default 16 KiB request line
        longer = {"filter": " or ".join(f'id eq "{i}"' for i in ids)}  # about 21,600 bytes encoded
        assert len(str(httpx.URL("/api/v1/users", params=longer))) > 16 * 1024
        answer = await okta.get("/api/v1/users", params=longer)
        assert answer.status_code == 200 and len(answer.json()) == 200
        await admin.set_max_url_bytes(8192)
