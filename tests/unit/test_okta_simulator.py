"""The Okta simulator in process: responses against the official OpenAPI spec, System Log polling,
rate limits and fault injection."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from okta_simulator import Settings, create_app
from okta_simulator.ids import iso

SPEC = Path(__file__).parents[1] / "fixtures" / "openapi" / "okta-management-openapi-2026.06.3.yaml"
SERVER = "https://subdomain.okta.com"
TOKENS = {"tok-a": "00Taaaaaaaaaaaaaaaaa", "tok-b": "00Tbbbbbbbbbbbbbbbbb"}
A = {"Authorization": "SSWS tok-a"}
B = {"Authorization": "SSWS tok-b"}


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC), config=Config(spec_validator_cls=None))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(clock) -> TestClient:
    settings = Settings(plan="workforce", token_share=0.5, tokens=dict(TOKENS), org_url=SERVER)
    return TestClient(create_app(settings, clock))


@pytest.fixture
def org(client) -> dict:
    """One app with two assigned users (one with a custom attribute)."""
    post = lambda path, body: client.post(f"/_admin{path}", json=body).json()  # noqa: E731
    alice = post("/users", {"profile": {"login": "alice@example.com", "firstName": "Alice", "lastName": "A",
                                        "costCenter": "42"}})["id"]
    bob = post("/users", {"profile": {"login": "bob@example.com", "firstName": "Bob", "lastName": "B"},
                          "status": "STAGED"})["id"]
    app = post("/apps", {"label": "Demo App"})["id"]
    au = post(f"/apps/{app}/users", {"userId": alice, "userName": "alice"})["appUserId"]
    post(f"/apps/{app}/users", {"userId": bob})
    return {"alice": alice, "bob": bob, "app": app, "app_user": au}


def validate(spec: OpenAPI, method: str, response, path: str | None = None) -> None:
    url = urlsplit(str(response.request.url))
    request = MockRequest(SERVER, method, path or url.path)
    spec.validate_response(request, MockResponse(response.content, status_code=response.status_code,
                                                 content_type="application/json"))


def links(response) -> dict[str, str]:
    out = {}
    for value in response.headers.get_list("link"):
        url, rel = value.split(";")
        out[rel.strip().split("=")[1].strip('"')] = url.strip()[1:-1]
    return out


def follow(client: TestClient, url: str, headers=A):
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}", headers=headers)


# --- shapes against the spec -------------------------------------------------------------------

def test_user_matches_spec(spec, client, org):
    r = client.get(f"/api/v1/users/{org['alice']}", headers=A)
    assert r.status_code == 200
    validate(spec, "get", r)
    body = r.json()
    assert body["id"].startswith("00u") and body["status"] == "ACTIVE"
    assert body["profile"]["costCenter"] == "42" and body["profile"]["displayName"] == "Alice A"
    assert client.get("/api/v1/users/alice@example.com", headers=A).json()["id"] == org["alice"]


def test_users_list_matches_spec(spec, client, org, clock):
    """listUsers: without a filter every user but the DEPROVISIONED ones, each exactly as `GET /users/{id}`."""
    gone = client.post("/_admin/users", json={"profile": {"login": "gone@example.com"}}).json()["id"]
    client.post(f"/_admin/users/{gone}/lifecycle/deactivate")
    r = client.get("/api/v1/users", headers=A)
    assert r.status_code == 200
    validate(spec, "get", r)
    listed = {u["id"]: u for u in r.json()}
    assert {org["alice"], org["bob"]} <= set(listed) and gone not in listed
    assert list(listed) == sorted(listed)
    assert listed[org["alice"]] == client.get(f"/api/v1/users/{org['alice']}", headers=A).json()
    assert set(links(r)) == {"self"}
    f = f'id eq "{gone}" or id eq "{org["bob"]}"'
    filtered = client.get("/api/v1/users", params={"filter": f}, headers=A)
    validate(spec, "get", filtered)
    assert sorted(u["id"] for u in filtered.json()) == sorted([gone, org["bob"]])


def test_app_matches_spec(spec, client, org):
    r = client.get(f"/api/v1/apps/{org['app']}", headers=A)
    assert r.status_code == 200
    validate(spec, "get", r)
    assert r.json()["label"] == "Demo App"


def test_app_users_page_with_expand_matches_spec_and_paginates(spec, client, org):
    r = client.get(f"/api/v1/apps/{org['app']}/users?limit=1&expand=user", headers=A)
    assert r.status_code == 200
    validate(spec, "get", r)
    first = r.json()
    assert len(first) == 1 and first[0]["_embedded"]["user"]["id"] == org["alice"]
    assert first[0]["credentials"]["userName"] == "alice" and first[0]["scope"] == "USER"
    second = follow(client, links(r)["next"])
    assert [u["id"] for u in second.json()] == [org["bob"]]
    assert "_embedded" in second.json()[0] and "next" not in links(second)


def test_app_user_matches_spec(spec, client, org):
    r = client.get(f"/api/v1/apps/{org['app']}/users/{org['alice']}", headers=A)
    assert r.status_code == 200
    validate(spec, "get", r)
    assert r.json()["id"] == org["alice"]


def test_logs_page_matches_spec(spec, client, org):
    r = client.get("/api/v1/logs", headers=A)
    assert r.status_code == 200
    validate(spec, "get", r)
    add = [e for e in r.json() if e["eventType"] == "application.user_membership.add"][0]
    assert [t["type"] for t in add["target"]] == ["AppUser", "AppInstance", "User"]
    assert add["target"][0]["id"] == org["app_user"] and add["target"][2]["id"] == org["alice"]


@pytest.mark.parametrize("path, headers, status, code", [
    ("/api/v1/users/{alice}", {}, 401, "E0000011"),
    ("/api/v1/users/{alice}", {"Authorization": "SSWS wrong"}, 401, "E0000011"),
    ("/api/v1/users/00unothere", A, 404, "E0000007"),
    ("/api/v1/apps/{app}/users/00unothere", A, 404, "E0000007"),
    ("/api/v1/logs?after=bm9wZQ", A, 400, "E0000001"),
    ("/api/v1/logs?limit=5000", A, 400, "E0000001"),
])
def test_errors_have_okta_bodies(spec, client, org, path, headers, status, code):
    r = client.get(path.format(**org), headers=headers)
    assert r.status_code == status
    body = r.json()
    assert body["errorCode"] == code and body["errorLink"] == code and body["errorCauses"] == [] or status == 400
    assert set(body) == {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}
    if status != 401:  # the spec documents no 401 for these operations
        validate(spec, "get", r, path.split("?")[0].format(**org))


# --- System Log polling ------------------------------------------------------------------------

def test_polling_empty_page_still_has_self_and_next(client):
    r = client.get("/api/v1/logs?sortOrder=ASCENDING", headers=A)
    assert r.status_code == 200 and r.json() == []
    assert set(links(r)) == {"self", "next"}
    assert len(r.headers.get_list("link")) == 2


def test_following_next_yields_only_later_events(client, org):
    first = client.get("/api/v1/logs?sortOrder=ASCENDING&limit=1000", headers=A)
    seen = {e["uuid"] for e in first.json()}
    empty = follow(client, links(first)["next"])
    assert empty.json() == [] and "next" in links(empty)
    client.post(f"/_admin/users/{org['alice']}/lifecycle/suspend")
    later = follow(client, links(empty)["next"])
    assert [e["eventType"] for e in later.json()] == ["user.lifecycle.suspend"]
    assert not seen & {e["uuid"] for e in later.json()}


def test_small_pages_walk_every_event_once(client, org):
    total = len(client.get("/api/v1/logs?limit=1000", headers=A).json())
    url, uuids = "/api/v1/logs?sortOrder=ASCENDING&limit=2", []
    for _ in range(total):
        r = follow(client, url) if url.startswith("http") else client.get(url, headers=A)
        uuids += [e["uuid"] for e in r.json()]
        url = links(r)["next"]
    assert len(uuids) == total == len(set(uuids))


def test_filter_event_type_or_and_target_id(client, org):
    f = 'eventType eq "user.lifecycle.create" or eventType eq "application.user_membership.add"'
    types = [e["eventType"] for e in client.get("/api/v1/logs", params={"filter": f}, headers=A).json()]
    assert sorted(set(types)) == ["application.user_membership.add", "user.lifecycle.create"] and len(types) == 4
    f = f'(target.id eq "{org["bob"]}") and eventType eq "application.user_membership.add"'
    events = client.get("/api/v1/logs", params={"filter": f}, headers=A).json()
    assert len(events) == 1 and events[0]["target"][2]["id"] == org["bob"]


def test_rejected_cursor_answers_400(spec, client, org):
    r = client.get("/api/v1/logs", headers=A)
    client.post("/_admin/faults/reject-cursors")
    bad = follow(client, links(r)["next"])
    assert bad.status_code == 400 and bad.json()["errorCode"] == "E0000001"
    validate(spec, "get", bad)
    fresh = client.get("/api/v1/logs", headers=A)
    assert follow(client, links(fresh)["next"]).status_code == 200


def test_expired_retention_silently_returns_less(client, clock, org):
    r = client.get("/api/v1/logs?limit=1", headers=A)
    clock.advance(3600)
    client.post(f"/_admin/users/{org['alice']}/lifecycle/suspend")
    before = iso(clock.now - 1)
    dropped = client.post("/_admin/faults/expire", json={"before": before}).json()["dropped"]
    assert dropped > 1
    rest = follow(client, links(r)["next"])
    assert rest.status_code == 200
    assert [e["eventType"] for e in rest.json()] == ["user.lifecycle.suspend"]


# --- writes through the API --------------------------------------------------------------------

def test_app_user_profile_write_logs_token_id(spec, client, org):
    r = client.post(f"/api/v1/apps/{org['app']}/users/{org['alice']}", headers=B, json={"profile": {"dept": "X"}})
    assert r.status_code == 200 and r.json()["profile"] == {"dept": "X"}
    validate(spec, "post", r)
    f = 'eventType eq "application.user_membership.update"'
    event = client.get("/api/v1/logs", params={"filter": f}, headers=A).json()[0]
    assert event["transaction"]["detail"] == {"requestApiTokenId": TOKENS["tok-b"]}
    assert [t["type"] for t in event["target"]] == ["AppUser", "AppInstance", "User"]


def test_group_assignment_creates_group_scoped_app_users(client, org):
    gid = client.post("/_admin/groups", json={"name": "eng"}).json()["id"]
    carol = client.post("/_admin/users", json={"profile": {"login": "carol@example.com"}}).json()["id"]
    client.put(f"/_admin/groups/{gid}/users/{carol}")
    client.put(f"/_admin/apps/{org['app']}/groups/{gid}")
    au = client.get(f"/api/v1/apps/{org['app']}/users/{carol}", headers=A).json()
    assert au["scope"] == "GROUP"
    assert [g["id"] for g in client.get(f"/api/v1/apps/{org['app']}/groups", headers=A).json()] == [gid]
    assert [u["id"] for u in client.get(f"/api/v1/groups/{gid}/users", headers=A).json()] == [carol]
    client.delete(f"/_admin/groups/{gid}/users/{carol}")
    assert client.get(f"/api/v1/apps/{org['app']}/users/{carol}", headers=A).status_code == 404
    f = f'target.id eq "{carol}" and eventType sw "application.user_membership"'
    types = [e["eventType"] for e in client.get("/api/v1/logs", params={"filter": f}, headers=A).json()]
    assert types == ["application.user_membership.add", "application.user_membership.remove"]


# --- rate limits and faults --------------------------------------------------------------------

def test_rate_limit_headers_and_429_after_token_share(spec, client, clock):
    limit = 60  # workforce logs bucket 120/min, half for one token
    for i in range(limit):
        r = client.get("/api/v1/logs", headers=A)
        assert r.status_code == 200
        assert r.headers["X-Rate-Limit-Limit"] == str(limit)
        assert r.headers["X-Rate-Limit-Remaining"] == str(limit - i - 1)
        assert int(r.headers["X-Rate-Limit-Reset"]) > clock.now and "date" in r.headers
    over = client.get("/api/v1/logs", headers=A)
    assert over.status_code == 429 and over.json()["errorCode"] == "E0000047"
    assert over.headers["X-Rate-Limit-Remaining"] == "0"
    validate(spec, "get", over)
    assert client.get("/api/v1/logs", headers=B).status_code == 200  # other token: own share
    assert client.get("/api/v1/users/00unothere", headers=A).status_code == 404  # other bucket
    clock.advance(60)
    assert client.get("/api/v1/logs", headers=A).status_code == 200  # next window


def test_small_apps_bucket_is_separate_from_app_itself(client, org):
    client.post("/_admin/plan", json={"plan": "developer_free"})  # apps 20/min -> 10 per token
    for _ in range(10):
        assert client.get(f"/api/v1/apps/{org['app']}/users", headers=A).status_code == 200
    assert client.get(f"/api/v1/apps/{org['app']}/users/{org['bob']}", headers=A).status_code == 429
    assert client.get(f"/api/v1/apps/{org['app']}", headers=A).status_code == 200
    stats = client.get("/_admin/stats").json()
    assert stats["calls"]["apps"] == {TOKENS["tok-a"]: 11} and stats["calls"]["app"] == {TOKENS["tok-a"]: 1}
    assert stats["rateLimited"]["apps"] == {TOKENS["tok-a"]: 1}


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_faults_hit_only_their_bucket(client, org, status):
    client.post("/_admin/faults/inject", json={"bucket": "user", "status": status, "count": 2})
    assert client.get(f"/api/v1/apps/{org['app']}", headers=A).status_code == 200
    codes = [client.get(f"/api/v1/users/{org['alice']}", headers=A).status_code for _ in range(3)]
    assert codes == [status, status, 200]


async def test_a_late_answer_says_what_was_true_when_it_was_asked(clock):
    """The slow-answer fault (the fault suite's stale-listing probe): the answer is computed when asked and sent
    ``delay_s`` later, only for paths that match; a change made meanwhile is not in it."""
    settings = Settings(plan="workforce", token_share=0.5, tokens=dict(TOKENS), org_url=SERVER)
    transport = httpx.ASGITransport(app=create_app(settings, clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        user = (await http.post("/_admin/users", json={"profile": {"login": "a@example.com", "firstName": "A",
                                                                    "lastName": "A", "title": "old"}})).json()["id"]
        app = (await http.post("/_admin/apps", json={"label": "Demo"})).json()["id"]
        await http.post(f"/_admin/apps/{app}/users", json={"userId": user})
        refused = await http.post("/_admin/faults/inject", json={"bucket": "apps", "status": None, "delay_s": 0})
        assert refused.status_code == 422 and "a status" in refused.json()["detail"]
        await http.post("/_admin/faults/inject", json={"bucket": "apps", "status": None, "delay_s": 0.5,
                                                       "path_regex": f"/apps/{app}/users$"})
        assert (await http.get(f"/api/v1/apps/{app}", headers=A)).status_code == 200  # no match: not delayed
        listing = asyncio.create_task(http.get(f"/api/v1/apps/{app}/users?expand=user", headers=A))
        await asyncio.sleep(0.1)
        assert not listing.done()
        await http.post(f"/_admin/users/{user}/profile", json={"profile": {"title": "new"}})
        answer = await listing
        assert answer.status_code == 200
        assert answer.json()[0]["_embedded"]["user"]["profile"]["title"] == "old"
        fresh = await http.get(f"/api/v1/apps/{app}/users?expand=user", headers=A)  # the fault was used once
        assert fresh.json()[0]["_embedded"]["user"]["profile"]["title"] == "new"
        assert (await http.get("/_admin/stats")).json()["faults"] == {"pending": 0, "used": 1}


def test_a_late_answer_is_not_used_up_by_a_request_answered_429(client, org):
    client.post("/_admin/plan", json={"plan": "developer_free"})  # apps 20/min -> 10 per token
    for _ in range(10):
        assert client.get(f"/api/v1/apps/{org['app']}/users", headers=A).status_code == 200
    client.post("/_admin/faults/inject", json={"bucket": "apps", "status": None, "delay_s": 0.01})
    assert client.get(f"/api/v1/apps/{org['app']}/users", headers=A).status_code == 429
    assert client.get("/_admin/stats").json()["faults"] == {"pending": 1, "used": 0}


# --- event conformance with public samples -----------------------------------------------------

FIXTURES = Path(__file__).parents[1] / "fixtures" / "okta"


def _drive_every_event(client: TestClient, org: dict) -> None:
    admin = lambda m, p, body=None: client.request(m, f"/_admin{p}", json=body)  # noqa: E731
    alice, bob, app = org["alice"], org["bob"], org["app"]
    admin("POST", f"/users/{alice}/profile", {"profile": {"title": "CTO"}})
    admin("POST", f"/apps/{app}/users/{alice}/username", {"userName": "alice2"})
    admin("POST", f"/apps/{app}/users/{alice}/profile", {"profile": {"x": 1}})
    admin("POST", f"/apps/{app}/users/{alice}/profile", {"profile": {"x": 2},
                                                          "eventType": "directory.app_user_profile.update"})
    admin("POST", f"/apps/{app}/users/{alice}/restore")
    admin("POST", f"/users/{alice}/primary-email", {"email": "alice.new@example.com"})
    admin("DELETE", f"/apps/{app}/users/{bob}")
    admin("POST", f"/users/{bob}/lifecycle/activate")
    admin("POST", f"/users/{alice}/lifecycle/suspend")
    admin("POST", f"/users/{alice}/lifecycle/unsuspend")
    admin("POST", f"/users/{alice}/lifecycle/deactivate")
    admin("POST", f"/users/{alice}/lifecycle/reactivate")
    gid = admin("POST", "/groups", {"name": "g"}).json()["id"]
    admin("PUT", f"/groups/{gid}/users/{bob}")
    admin("POST", f"/groups/{gid}/profile", {"name": "g2"})
    admin("PUT", f"/apps/{app}/groups/{gid}")
    admin("DELETE", f"/apps/{app}/groups/{gid}")
    admin("DELETE", f"/groups/{gid}/users/{bob}")
    admin("DELETE", f"/groups/{gid}")
    admin("DELETE", f"/users/{bob}")


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("okta-system-log-*.json")), ids=lambda p: p.stem[16:])
def test_events_match_public_samples(client, org, fixture):
    sample = json.loads(fixture.read_text())
    _drive_every_event(client, org)
    events = [e for e in client.get("/_admin/events").json() if e["eventType"] == sample["eventType"]]
    assert events, f"simulator never wrote {sample['eventType']}"
    for event in events:
        assert [t["type"] for t in event["target"]] == [t["type"] for t in sample["target"]]
        assert set(event["transaction"]) == set(sample["transaction"])
        present = {k for k, v in sample.items() if v is not None}  # we omit nulls the spec forbids
        assert present <= set(event), present - set(event)
        assert event["actor"]["type"] == "User" and event["version"] == "0"


def test_restore_and_primary_email_change_only_what_they_say(client, org):
    alice, app = org["alice"], org["app"]
    before = client.get(f"/api/v1/apps/{app}/users/{alice}", headers=A).json()
    client.post(f"/_admin/apps/{app}/users/{alice}/restore")
    assert client.get(f"/api/v1/apps/{app}/users/{alice}", headers=A).json() == before
    client.post(f"/_admin/users/{alice}/primary-email", json={"email": "alice.new@example.com"})
    assert client.get(f"/api/v1/users/{alice}", headers=A).json()["profile"]["email"] == "alice.new@example.com"
    assert [e["eventType"] for e in client.get("/_admin/events").json()[-2:]] == [
        "application.user_membership.restore", "user.account.update_primary_email"]
    assert client.post(f"/_admin/users/{alice}/primary-email", json={"email": "nope"}).status_code == 400
    bad = client.post(f"/_admin/apps/{app}/users/{alice}/profile", json={"profile": {}, "eventType": "user.x"})
    assert bad.status_code == 400


def test_token_driven_write_names_the_token(client, org):
    client.post(f"/api/v1/apps/{org['app']}/users/{org['alice']}", headers=A, json={"credentials": {"userName": "al"}})
    event = client.get("/_admin/events").json()[-1]
    assert event["eventType"] == "application.user_membership.change_username"
    assert event["transaction"]["detail"]["requestApiTokenId"] == TOKENS["tok-a"]
    assert event["target"][0]["alternateId"] == "al"


def test_a_filtered_polling_request_keeps_its_filter_in_every_next_link(client, clock, org):
    """As Okta does: the filter goes into the `next` link, and events written later are matched by it too."""
    f = 'eventType eq "user.lifecycle.suspend" or eventType eq "application.user_membership.add"'
    r = client.get("/api/v1/logs", params={"filter": f, "sortOrder": "ASCENDING", "limit": 1}, headers=A)
    assert [e["eventType"] for e in r.json()] == ["application.user_membership.add"]
    walked = []
    for _ in range(3):  # two more pages: the other add, then an empty one at the log's end
        nxt = links(r)["next"]
        assert parse_qs(urlsplit(nxt).query)["filter"] == [f]
        r = follow(client, nxt)
        walked += [e["eventType"] for e in r.json()]
    assert walked == ["application.user_membership.add"]
    clock.advance(5)
    client.post(f"/_admin/users/{org['alice']}/lifecycle/suspend")
    client.post(f"/_admin/users/{org['alice']}/lifecycle/unsuspend")  # not asked for
    r = follow(client, links(r)["next"])
    assert [e["eventType"] for e in r.json()] == ["user.lifecycle.suspend"]
    assert parse_qs(urlsplit(links(r)["next"]).query)["filter"] == [f]
