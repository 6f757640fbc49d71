"""The simulator's users listing (`GET /api/v1/users`), its `users` rate-limit bucket, the URL length limit, the
list-users answer edits, the bulk admin endpoints and the System Log at 20,000+ events."""
from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient

from okta_simulator import Settings, SimulatorAdmin, create_app
from okta_simulator.cli import parse_args, settings_from
from okta_simulator.eventlog import EventLog
from okta_simulator.ids import iso
from tests.unit.test_okta_simulator import A, SERVER, TOKENS, FakeClock, follow, links, validate
from tests.unit.test_okta_simulator import clock, spec  # noqa: F401 - fixtures

ERROR_KEYS = {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}


@pytest.fixture
def client(clock) -> TestClient:  # noqa: F811
    settings = Settings(plan="workforce", token_share=0.5, tokens=dict(TOKENS), org_url=SERVER)
    return TestClient(create_app(settings, clock))


def new_user(client, login: str, status: str = "ACTIVE", **profile) -> str:
    body = {"profile": {"login": login, "firstName": login[0].upper(), "lastName": "Doe", **profile},
            "status": status}
    r = client.post("/_admin/users", json=body)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def listed(client, **params) -> list[str]:
    r = client.get("/api/v1/users", params=params, headers=A)
    assert r.status_code == 200, r.text
    return [u["id"] for u in r.json()]


@pytest.fixture
def people(client) -> dict:
    ids = {name: new_user(client, f"{name}@example.com") for name in ("ann", "ben", "cat")}
    ids["dan"] = new_user(client, "dan@example.com", "STAGED")
    ids["eve"] = new_user(client, "eve@example.com")
    client.post(f"/_admin/users/{ids['eve']}/lifecycle/deactivate")
    return ids


# --- filter ------------------------------------------------------------------------------------

def test_filter_by_ids_with_or_returns_deprovisioned_too(client, people):
    f = " or ".join(f'id eq "{people[n]}"' for n in ("eve", "ann", "dan"))
    assert listed(client, filter=f) == sorted([people["eve"], people["ann"], people["dan"]])
    assert people["eve"] not in listed(client)  # without a filter: no DEPROVISIONED user
    assert listed(client, filter='id eq "00unothere"') == []


@pytest.mark.parametrize("expr, names", [
    ('status eq "DEPROVISIONED"', ["eve"]),
    ('status eq "STAGED" or status eq "DEPROVISIONED"', ["dan", "eve"]),
    ('profile.login eq "ben@example.com"', ["ben"]),
    ('profile.email eq "cat@example.com"', ["cat"]),
    ('profile.firstName eq "A"', ["ann"]),
    ('profile.lastName eq "Doe" and status eq "STAGED"', ["dan"]),
    ('PROFILE.login eq "ben@example.com"', "400"),  # property names are case-sensitive
    ('profile.login EQ "ben@example.com" OR profile.login Eq "cat@example.com"', ["ben", "cat"]),
    ('profile.login eq "BEN@example.com"', []),  # values are case-sensitive (spec)
    ('status eq "ACTIVE" and (profile.firstName eq "A" or profile.firstName eq "C")', ["ann", "cat"]),
    ('(status eq "STAGED")', ["dan"]),
    ('profile.firstName eq "A" or profile.firstName eq "B" and status eq "STAGED"', ["ann"]),  # and binds tighter
])
def test_filter_expressions(client, people, expr, names):
    r = client.get("/api/v1/users", params={"filter": expr}, headers=A)
    if names == "400":
        assert r.status_code == 400
        return
    assert r.status_code == 200, r.text
    assert [u["id"] for u in r.json()] == sorted(people[n] for n in names)


@pytest.mark.parametrize("expr", [
    'id sw "00u"', 'profile.login co "ann"', 'status gt "A"', 'profile.title eq "x"', 'status eq ACTIVE',
    'not status eq "ACTIVE"', 'status ne "ACTIVE"', 'id eq "x" and', '(id eq "x"', 'id eq "x")',
    'lastUpdated gt "yesterday"', 'status eq "A" xor id eq "b"', '"status" eq "ACTIVE"', 'status eq "x',
])
def test_invalid_filter_is_400_e0000031(spec, client, people, expr):  # noqa: F811
    r = client.get("/api/v1/users", params={"filter": expr}, headers=A)
    assert r.status_code == 400
    body = r.json()
    assert set(body) == ERROR_KEYS and body["errorCode"] == "E0000031"
    assert body["errorSummary"] == "Invalid search criteria." and body["errorCauses"][0]["errorSummary"]
    validate(spec, "get", r, "/api/v1/logs")  # listUsers documents no 400: check the body against Error elsewhere


def test_last_updated_changes_on_every_change_and_filters(client, clock, people):
    ann = people["ann"]

    def last_updated() -> str:
        return client.get(f"/api/v1/users/{ann}", headers=A).json()["lastUpdated"]

    seen = [last_updated()]
    for change in ("profile", "suspend", "unsuspend", "deactivate", "reactivate", "activate"):
        clock.advance(1.5)
        if change == "profile":
            client.post(f"/_admin/users/{ann}/profile", json={"profile": {"title": "Boss"}})
        else:
            assert client.post(f"/_admin/users/{ann}/lifecycle/{change}").status_code == 200
        seen.append(last_updated())
        assert seen[-1] == iso(clock.now) and seen[-1] > seen[-2], change
    everyone_else = sorted(i for n, i in people.items() if n != "ann")
    assert listed(client, filter=f'lastUpdated gt "{seen[-2]}"') == [ann]
    assert listed(client, filter=f'lastUpdated ge "{seen[-1]}"') == [ann]
    assert listed(client, filter=f'lastUpdated eq "{seen[-1]}"') == [ann]
    assert ann not in listed(client, filter=f'lastUpdated gt "{seen[-1]}"')
    older = listed(client, filter=f'lastUpdated lt "{seen[1]}"')
    assert ann not in older and set(everyone_else) <= set(older)
    assert ann in listed(client, filter=f'lastUpdated le "{seen[-1]}" and id eq "{ann}"')
    row = client.get("/api/v1/users", params={"filter": f'id eq "{ann}"'}, headers=A).json()[0]
    assert row == client.get(f"/api/v1/users/{ann}", headers=A).json()


def test_q_is_a_prefix_without_deprovisioned_users(client, people):
    assert listed(client, q="an") == [people["ann"]]
    assert listed(client, q="DOE") == sorted(i for n, i in people.items() if n != "eve")
    assert listed(client, q="e") == []  # eve is deactivated


@pytest.mark.parametrize("param", ["search", "sortBy", "sortOrder", "fields"])
def test_unsimulated_parameters_are_refused(client, param):
    r = client.get("/api/v1/users", params={param: 'status eq "ACTIVE"'}, headers=A)
    assert r.status_code == 400 and r.json()["errorCode"] == "E0000001"


# --- paging ------------------------------------------------------------------------------------

def test_pages_follow_next_in_id_order(spec, client, people):  # noqa: F811
    everyone = listed(client, filter='profile.lastName eq "Doe"')
    assert len(everyone) == 5 and everyone == sorted(everyone)
    f = 'profile.lastName eq "Doe"'
    r = client.get("/api/v1/users", params={"filter": f, "limit": 2}, headers=A)
    validate(spec, "get", r)
    pages = [[u["id"] for u in r.json()]]
    assert links(r)["self"].startswith(f"{SERVER}/api/v1/users?")
    while "next" in links(r):
        nxt = links(r)["next"]
        assert "limit=2" in nxt and "filter=" in nxt and f"after={pages[-1][-1]}" in nxt
        r = follow(client, nxt)
        pages.append([u["id"] for u in r.json()])
    assert pages == [everyone[0:2], everyone[2:4], everyone[4:5]]
    assert len(r.headers.get_list("link")) == 1  # the last page: self only


def test_limit_defaults_to_200_and_is_capped_at_200(client):
    ids = client.post("/_admin/users/bulk", json={"users": [
        {"profile": {"login": f"u{i:03d}@example.com"}} for i in range(230)]}).json()["ids"]
    first = client.get("/api/v1/users", headers=A)
    assert len(first.json()) == 200 and "next" in links(first)
    rest = follow(client, links(first)["next"])
    assert len(rest.json()) == 31 and "next" not in links(rest)  # 230 users + the simulator's admin
    assert {u["id"] for u in first.json() + rest.json()} >= set(ids)
    capped = client.get("/api/v1/users?limit=500", headers=A)
    assert len(capped.json()) == 200 and "limit=500" in links(capped)["next"]
    assert client.get("/api/v1/users?limit=0", headers=A).status_code == 400


def test_after_a_deleted_user_still_pages(client, people):
    ordered = listed(client)
    client.delete(f"/_admin/users/{ordered[1]}")
    assert listed(client, after=ordered[1]) == ordered[2:]


# --- rate limits -------------------------------------------------------------------------------

def test_users_bucket_is_separate_from_user_and_counted(client, people):
    r = client.get("/api/v1/users", headers=A)
    assert r.headers["X-Rate-Limit-Limit"] == "300"  # workforce 600/min, half for one token
    assert r.headers["X-Rate-Limit-Remaining"] == "299" and "X-Rate-Limit-Reset" in r.headers
    one = client.get(f"/api/v1/users/{people['ann']}", headers=A)
    assert one.headers["X-Rate-Limit-Limit"] == "1000" and one.headers["X-Rate-Limit-Remaining"] == "999"
    client.post("/api/v1/users", headers=A, json={})  # any method on /api/v1/users itself
    stats = client.get("/_admin/stats").json()
    assert stats["callsByBucket"]["users"] == 2 and stats["callsByBucket"]["user"] == 1
    assert stats["limits"]["users"] == 300


@pytest.mark.parametrize("plan, per_token", [("developer_free", 50), ("developer_paid", 150), ("one_app", 150),
                                             ("enterprise", 300), ("workforce", 300), ("generous", 50000)])
def test_users_bucket_limits_per_plan(client, plan, per_token):
    client.post("/_admin/plan", json={"plan": plan})
    assert client.get("/api/v1/users", headers=A).headers["X-Rate-Limit-Limit"] == str(per_token)


def test_users_bucket_runs_out_on_its_own(client, people):
    client.post("/_admin/plan", json={"plan": "developer_free"})  # users: other's 100/min -> 50 per token
    for _ in range(50):
        assert client.get("/api/v1/users", headers=A).status_code == 200
    over = client.get("/api/v1/users", params={"filter": 'status eq "ACTIVE"'}, headers=A)
    assert over.status_code == 429 and over.json()["errorCode"] == "E0000047"
    assert client.get(f"/api/v1/users/{people['ann']}", headers=A).status_code == 200
    assert client.get("/_admin/stats").json()["rateLimited"]["users"] == {TOKENS["tok-a"]: 1}


# --- URL length --------------------------------------------------------------------------------

def _long_filter(n: int) -> str:
    return " or ".join(f'id eq "00u{i:017d}"' for i in range(n))


def test_url_longer_than_the_limit_is_414(client):
    url_of = lambda r: len(r.request.url.raw_path)  # noqa: E731 - path + ? + query, as sent
    ok = client.get("/api/v1/users", params={"filter": _long_filter(50)}, headers=A)
    assert ok.status_code == 200 and url_of(ok) < 8192
    too_long = client.get("/api/v1/users", params={"filter": _long_filter(300)}, headers=A)
    assert url_of(too_long) > 8192 and too_long.status_code == 414
    assert set(too_long.json()) == ERROR_KEYS
    assert "longer than 8192" in too_long.json()["errorCauses"][0]["errorSummary"]
    assert client.get("/_admin/stats").json()["callsByBucket"]["users"] == 1  # a 414 is not counted


def test_url_limit_is_exact_and_settable_at_run_time(client):
    assert client.get("/_admin/limits").json() == {"maxUrlBytes": 8192}
    assert client.post("/_admin/limits", json={"maxUrlBytes": 30}).json() == {"maxUrlBytes": 30}
    assert client.get("/api/v1/users?limit=1234567890", headers=A).status_code == 200  # 30 bytes exactly
    assert client.get("/api/v1/users?limit=12345678901", headers=A).status_code == 414
    assert client.get("/api/v1/users/%41%42%43%44%45%46%47%48", headers=A).status_code == 414  # 38 as sent, 22 read
    assert client.get("/_admin/limits").status_code == 200  # the harness's side door has no limit
    assert client.post("/_admin/limits", json={"maxUrlBytes": 0}).status_code == 400


def test_cli_max_url_bytes(monkeypatch):
    assert settings_from(parse_args([])).max_url_bytes == 8192
    assert settings_from(parse_args(["--max-url-bytes", "4000"])).max_url_bytes == 4000
    monkeypatch.setenv("OKTA_SIM_MAX_URL_BYTES", "2048")
    assert settings_from(parse_args([])).max_url_bytes == 2048


# --- faults on the listing ---------------------------------------------------------------------

def test_status_faults_hit_the_users_bucket(client, people):
    client.post("/_admin/faults/inject", json={"bucket": "users", "status": 503, "count": 1})
    assert client.get(f"/api/v1/users/{people['ann']}", headers=A).status_code == 200  # other bucket
    assert client.get("/api/v1/users", headers=A).status_code == 503
    assert client.get("/api/v1/users", headers=A).status_code == 200


@pytest.mark.parametrize("edit", ["drop_first", "repeat_first", "add_unasked"])
def test_edits_change_one_listing(client, people, edit):
    f = f'id eq "{people["ben"]}" or id eq "{people["ann"]}"'
    honest = listed(client, filter=f)
    assert client.post("/_admin/faults/inject", json={"bucket": "users", "status": None, "edit": edit}).json()
    got = listed(client, filter=f)
    if edit == "drop_first":
        assert got == honest[1:]
    elif edit == "repeat_first":
        assert got == honest[:1] + honest
    else:
        assert got[:2] == honest and len(got) == 3 and got[2] not in honest
        assert got[2] in client.get("/_admin/events").text  # an existing user
    assert listed(client, filter=f) == honest  # used once
    assert client.get("/_admin/stats").json()["faults"] == {"pending": 0, "used": 1}


def test_add_unasked_without_a_filter_adds_a_deprovisioned_user(client, people):
    client.post("/_admin/faults/inject", json={"status": None, "edit": "add_unasked"})
    got = listed(client)
    assert got[-1] == people["eve"] and got.count(people["eve"]) == 1


def test_an_edit_waits_for_a_listing(client, people):
    """An edit fault (any bucket, any path) is taken only by a users listing; a path_regex narrows it further."""
    client.post("/_admin/faults/inject", json={"bucket": "*", "status": None, "edit": "drop_first",
                                               "path_regex": "/api/v1/users$"})
    assert client.get(f"/api/v1/users/{people['ann']}", headers=A).status_code == 200
    assert client.get("/api/v1/logs", headers=A).status_code == 200
    assert client.get("/_admin/stats").json()["faults"] == {"pending": 1, "used": 0}
    edited, honest = listed(client), listed(client)
    assert edited == honest[1:]


@pytest.mark.parametrize("body", [{"status": 503, "edit": "drop_first"}, {"status": None, "edit": "drop_last"}])
def test_bad_edits_are_refused(client, body):
    assert client.post("/_admin/faults/inject", json=body).status_code == 422


@pytest.mark.parametrize("edit, titles", [(None, ["old"]), ("repeat_first", ["old", "old"])])
async def test_a_late_listing_says_what_was_true_when_asked(clock, edit, titles):  # noqa: F811
    settings = Settings(plan="workforce", token_share=0.5, tokens=dict(TOKENS), org_url=SERVER)
    transport = httpx.ASGITransport(app=create_app(settings, clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http, \
            SimulatorAdmin("http://sim", client=http) as admin:
        user = await admin.create_user({"login": "late@example.com", "title": "old"})
        await admin.inject("users", None, delay_s=0.4, edit=edit, path_regex="/users$")
        assert (await http.get(f"/api/v1/users/{user}", headers=A)).status_code == 200  # other bucket, not late
        listing = asyncio.create_task(http.get("/api/v1/users", params={"filter": f'id eq "{user}"'}, headers=A))
        await asyncio.sleep(0.1)
        assert not listing.done()
        await admin.update_profile(user, {"title": "new"})
        answer = (await listing).json()
        assert [u["profile"]["title"] for u in answer] == titles
        assert (await admin.stats())["faults"] == {"pending": 0, "used": 1}


# --- bulk admin --------------------------------------------------------------------------------

def _types_by_target(events: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e["target"][-1]["id"], []).append(e["eventType"])
    return out


def test_bulk_users_write_what_single_creates_write(client):
    single = new_user(client, "one@example.com", "STAGED")
    before = len(client.get("/_admin/events").json())
    body = {"users": [{"profile": {"login": "two@example.com"}}, {"profile": {"login": "three@example.com"},
                                                                   "status": "STAGED"}]}
    ids = client.post("/_admin/users/bulk", json=body).json()["ids"]
    events = _types_by_target(client.get("/_admin/events").json()[before:])
    assert events == {ids[0]: ["user.lifecycle.create", "user.lifecycle.activate"],
                      ids[1]: ["user.lifecycle.create"]}
    assert _types_by_target(client.get("/_admin/events").json())[single] == ["user.lifecycle.create"]
    two = client.get(f"/api/v1/users/{ids[0]}", headers=A).json()
    assert two["status"] == "ACTIVE" and two["profile"]["email"] == "two@example.com"
    assert client.get("/api/v1/users/three@example.com", headers=A).json()["status"] == "STAGED"


@pytest.mark.parametrize("users", [
    [{"profile": {"login": "x@example.com"}}, {"profile": {"login": "X@example.com"}}],
    [{"profile": {"login": "x@example.com"}}, {"profile": {"login": "one@example.com"}}],
    [{"profile": {"login": "x@example.com"}}, {"profile": {}}],
    [{"profile": {"login": "x@example.com"}}, {"profile": {"login": "y@example.com"}, "status": "SUSPENDED"}],
])
def test_bulk_users_all_or_nothing(client, users):
    new_user(client, "one@example.com")
    count = len(client.get("/_admin/events").json())
    r = client.post("/_admin/users/bulk", json={"users": users})
    assert r.status_code == 400 and len(client.get("/_admin/events").json()) == count
    assert client.get("/api/v1/users/x@example.com", headers=A).status_code == 404


def test_bulk_assignment_writes_one_add_per_user(client, people):
    app = client.post("/_admin/apps", json={"label": "Bulk"}).json()["id"]
    client.post(f"/_admin/apps/{app}/users", json={"userId": people["ann"]})
    before = len(client.get("/_admin/events").json())
    ids = [people[n] for n in ("ann", "ben", "cat", "eve")]
    assert client.post(f"/_admin/apps/{app}/users/bulk", json={"user_ids": ids}).json() == {"assigned": 3}
    events = client.get("/_admin/events").json()[before:]
    assert [e["eventType"] for e in events] == ["application.user_membership.add"] * 3
    assert [[t["type"] for t in e["target"]] for e in events] == [["AppUser", "AppInstance", "User"]] * 3
    assert [e["target"][2]["id"] for e in events] == ids[1:]
    assert client.get(f"/api/v1/apps/{app}/users/{people['eve']}", headers=A).json()["status"] == "INACTIVE"
    missing = client.post(f"/_admin/apps/{app}/users/bulk", json={"user_ids": [people["dan"], "00unothere"]})
    assert missing.status_code == 404
    assert client.get(f"/api/v1/apps/{app}/users/{people['dan']}", headers=A).status_code == 404


async def test_bulk_admin_client_10000_users_in_seconds():
    settings = Settings(plan="generous", tokens=dict(TOKENS), org_url=SERVER)
    transport = httpx.ASGITransport(app=create_app(settings, FakeClock()))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim", timeout=60) as http, \
            SimulatorAdmin("http://sim", client=http) as admin:
        started = asyncio.get_running_loop().time()
        ids = await admin.create_users([{"login": f"user{i}@example.com"} for i in range(10_000)])
        app = await admin.create_app("Big")
        assert await admin.assign_users(app, ids) == 10_000
        elapsed = asyncio.get_running_loop().time() - started
        assert len(set(ids)) == 10_000 and elapsed < 20, elapsed
        events = await admin.events()
        assert len(events) == 3 * 10_000 + 1
        page = await http.get("/api/v1/users", params={"filter": " or ".join(f'id eq "{i}"' for i in ids[:150])},
                              headers=A)
        assert sorted(u["id"] for u in page.json()) == sorted(ids[:150])


# --- the System Log at 20,000+ events ----------------------------------------------------------

def _big_log(n: int) -> EventLog:
    log = EventLog()
    for i in range(n):
        ts = 1_800_000_000 + i / 10
        log.append({"published": iso(ts), "uuid": str(i), "eventType": "x"}, ts)
    return log


class CountingPred:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, _event) -> bool:
        self.calls += 1
        return True


def test_polling_pages_cost_their_size_not_the_log():
    log, now = _big_log(25_000), 1_800_003_000.0
    seen, after = [], None
    while True:
        pred = CountingPred()
        page = log._poll(now, "2020-01-01T00:00:00Z", after, 1000, pred)
        assert pred.calls <= 1000
        seen += [e["uuid"] for e in page.events]
        after = page.next_cursor
        if not page.events:
            break
    assert seen == [str(i) for i in range(25_000)]


def test_bounded_pages_reuse_the_sorted_rows_and_match_a_plain_sort():
    log, now = _big_log(25_000), 1_800_003_000.0
    for order in ("ASCENDING", "DESCENDING"):
        seen, after, calls = [], None, []
        while True:
            pred = CountingPred()
            page = log._bounded(now, iso(1_800_000_100), iso(1_800_002_000), after, 700, order, pred, "f")
            calls.append(pred.calls)
            seen += [e["uuid"] for e in page.events]
            after = page.next_cursor
            if after is None:
                break
        expected = [str(i) for i in range(1000, 20_000)]
        assert seen == (expected if order == "ASCENDING" else expected[::-1])
        assert calls[0] in (0, 25_000) and set(calls[1:]) == {0}


def test_paced_profile_updates_are_made_by_the_simulator_each_with_its_event_and_a_bad_id_schedules_none(clock):  # noqa: F811
    settings = Settings(plan="workforce", token_share=0.5, tokens=dict(TOKENS), org_url=SERVER)
    with TestClient(create_app(settings, clock)) as client:  # one event loop for the run's task
        ids = [new_user(client, f"p{i}@example.com") for i in range(5)]
        before = len(client.get("/_admin/events").json())
        bad = client.post("/_admin/users/profile-updates/paced",
                          json={"updates": [{"id": ids[0], "profile": {"title": "x"}},
                                            {"id": "00unotthere000000000", "profile": {"title": "x"}}],
                                "rate_per_s": 1000})
        assert bad.status_code == 404 and "00unotthere000000000" in bad.text
        assert client.post("/_admin/users/profile-updates/paced",
                           json={"updates": [], "rate_per_s": 0}).status_code == 400
        r = client.post("/_admin/users/profile-updates/paced",
                        json={"updates": [{"id": u, "profile": {"title": f"t{i}"}} for i, u in enumerate(ids)],
                              "rate_per_s": 1000})
        assert r.status_code == 202 and r.json()["scheduled"] == 5
        for _ in range(200):
            status = client.get("/_admin/users/profile-updates/paced").json()
            if status["finished_at"] is not None:
                break
            client.portal.call(asyncio.sleep, 0.01)
        assert status["done"] == status["total"] == 5 and not status["running"]
        events = client.get("/_admin/events").json()[before:]
        assert [e["eventType"] for e in events] == ["user.account.update_profile"] * 5
        assert [e["target"][-1]["id"] for e in events] == ids  # in the order given
        assert [client.get(f"/api/v1/users/{u}", headers=A).json()["profile"]["title"] for u in ids] == \
            [f"t{i}" for i in range(5)]
        slow = {"updates": [{"id": u, "profile": {"title": "again"}} for u in ids[:2]], "rate_per_s": 4}
        assert client.post("/_admin/users/profile-updates/paced", json=slow).status_code == 202
        busy = client.post("/_admin/users/profile-updates/paced", json=slow)
        assert busy.status_code == 409 and "already under way" in busy.text  # one run at a time
        for _ in range(200):
            if client.get("/_admin/users/profile-updates/paced").json()["finished_at"] is not None:
                break
            client.portal.call(asyncio.sleep, 0.02)
        assert client.get("/_admin/users/profile-updates/paced").json()["done"] == 2
