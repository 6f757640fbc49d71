"""The console's routes in process (httpx's ASGI transport) on the real MongoDB-wire server: who may see and do
what, CSRF, the audit page's filters and their refusals, one change's timeline, the rate limit and the Okta budget
reserve, forged OIDC callbacks. The actions (replay, provision, preview, guard) are recorded here, so a refusal is
proven to have done nothing; the end-to-end console tests (tests/e2e/test_console.py) run the real ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from bridge_console.app import create_app
from bridge_console.auth import Oidc, RateLimit, Sessions
from bridge_console.data import Reader
from bridge_console.settings import ConsoleSettings
from okta_bridge.apiauth import ApiTokens, hash_token
from okta_bridge.connectors import load_connectors
from okta_bridge.mongo import connect
from okta_bridge.deadletters import Fate, Taken
from tests.conftest import MONGODB_URL

pytestmark = pytest.mark.integration

ORG = "http://127.0.0.1:9"
APP_ID = "0oaConsoleApp0000001"
USER_ID = "00uConsoleUser000001"
VIEWER, ADMIN = "viewer-token-0123456789", "admin-token-0123456789ab"
TRACE = "0af7651916cd43dd8448eb211c80319c"


class RecordedActions:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def preview(self, app, user):
        self.calls.append(("preview", app.name, user))
        return {"app": app.name, "user": USER_ID, "decision": "assigned and ACTIVE: update", "reads": [],
                "would_send": [{"method": "PUT", "path": "/scim/v2/Users/1", "body": {"password": "***"}}],
                "outcome": "applied: preview"}

    async def provision(self, app, user, by):
        self.calls.append(("provision", app.name, user, by))
        return {"user": USER_ID}

    async def dead_letters(self):
        from types import SimpleNamespace

        from okta_bridge.deadletters import DeadLetter

        plan = SimpleNamespace(app_id=APP_ID, okta_user_id=USER_ID, okta_group_id=None, event_uuid="e-1")
        return [DeadLetter(id="0123456789ab", reason="target rejected: 400 <b>bad</b>", attempts=5,
                           source="dispatcher.default", kind="ScimOperationPlanned", message=plan, headers={})]

    async def replay(self, ids, by):
        self.calls.append(("replay", sorted(ids), by))
        return [Taken(None, Fate.REPLAYED, "replayed to bridge.events look-again")]  # type: ignore[arg-type]

    async def guard(self, action, app_id, users, by):
        self.calls.append(("guard", action, app_id, users, by))
        return []


@pytest.fixture
async def console(tmp_path: Path, mongo_db: str, request: pytest.FixtureRequest):
    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump({"apps": [{
        "okta_app_id": APP_ID, "name": "jira", "base_url": "http://127.0.0.1:9/scim/v2/",
        "auth": {"type": "none"}}]}))
    client, db = connect(MONGODB_URL, mongo_db)
    cfg = ConsoleSettings(actions_per_minute=2)
    sessions = Sessions(db, cfg.session_ttl_s)
    await sessions.ensure_indexes()
    reader = Reader(db, ORG, load_connectors(str(path)))
    reader.backlogs = _no_broker  # type: ignore[method-assign] # no broker in these tests: the page says unknown
    actions = RecordedActions()
    tokens = ApiTokens.parse(f"ops-viewer:viewer:{hash_token(VIEWER)},ops-admin:operator:{ADMIN}")
    oidc = None
    if getattr(request, "param", None) == "oidc":  # an issuer nobody answers at: the refusals come before it
        oidc = Oidc("http://127.0.0.1:9", "0oaConsoleClient0001", "s3cret-s3cret", "http://localhost:8090/oidc/callback",
                    "groups", httpx.AsyncClient(timeout=1))
    app = create_app(cfg, tokens, ["127.0.0.1", "localhost"], sessions, reader, actions,
                     RateLimit(db, cfg.actions_per_minute), oidc)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8090") as http:
        yield http, actions, db
    await client.close()


async def _no_broker():
    return {}


async def sign_in(http: httpx.AsyncClient, token: str) -> str:
    """Signs in with a token through the login form; returns the session's CSRF token (from a page)."""
    page = await http.get("/login")
    pre = re.search(r'name="pre" value="([^"]+)"', page.text)[1]
    done = await http.post("/login/token", data={"pre": pre, "token": token, "next": "/users"})
    assert done.status_code == 303 and done.headers["location"] == "/users"
    users = await http.get("/users")
    return re.search(r'name="csrf" value="([^"]+)"', users.text)[1]


async def test_without_a_session_pages_send_a_browser_to_sign_in_and_everything_else_is_401(console):
    http, actions, _ = console
    page = await http.get("/apps", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fapps"
    assert (await http.get("/apps")).status_code == 401
    assert (await http.get("/audit", headers={"authorization": "Bearer not-a-token-at-all"})).status_code == 401
    for path in ("/dead-letters/replay", "/users/provision", "/users/preview", "/apps/jira/guard/release", "/logout"):
        refused = await http.post(path, data={"id": "x", "user": USER_ID, "app": "jira"})
        assert refused.status_code == 401, path
    assert actions.calls == []


async def test_a_viewer_sees_but_cannot_act(console):
    http, actions, _ = console
    csrf = await sign_in(http, VIEWER)
    apps = await http.get("/apps")
    assert apps.status_code == 200 and 'data-app="jira"' in apps.text and "viewer" in apps.text
    for path, data in (("/dead-letters/replay", {"id": "abc"}), ("/users/provision", {"user": USER_ID, "app": "jira"}),
                       ("/apps/jira/guard/release", {}), ("/apps/jira/guard/discard", {})):
        refused = await http.post(path, data={**data, "csrf": csrf})
        assert refused.status_code == 403 and "only an admin" in refused.text, path
    bearer = await http.post("/dead-letters/replay", data={"id": "abc"},
                             headers={"authorization": f"Bearer {VIEWER}"})
    assert bearer.status_code == 403
    assert actions.calls == []
    dead = await http.get("/dead-letters")
    assert 'id="replay"' not in dead.text and "An admin can replay" in dead.text
    assert "0123456789ab" in dead.text and 'name="id"' not in dead.text
    assert "&lt;b&gt;bad&lt;/b&gt;" in dead.text  # what a target answered is text, never markup


async def test_an_admin_acts_only_with_the_sessions_csrf_token_from_the_consoles_own_origin(console):
    http, actions, _ = console
    csrf = await sign_in(http, ADMIN)
    dead = await http.get("/dead-letters")
    assert 'name="id" value="0123456789ab"' in dead.text and 'id="replay"' in dead.text and ">jira<" in dead.text
    assert (await http.post("/dead-letters/replay", data={"id": "abc"})).status_code == 403
    assert (await http.post("/dead-letters/replay", data={"id": "abc", "csrf": "forged" * 8})).status_code == 403
    foreign = await http.post("/dead-letters/replay", data={"id": "abc", "csrf": csrf},
                              headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert actions.calls == []
    done = await http.post("/dead-letters/replay", data={"id": "abc", "csrf": csrf},
                           headers={"origin": "http://localhost:8090"})
    assert done.status_code == 303 and done.headers["location"] == "/dead-letters?done=replayed%3A1%3A1"
    assert "1 of 1 dead letter(s) replayed" in (await http.get(done.headers["location"])).text
    assert actions.calls == [("replay", ["abc"], "ops-admin (token)")]
    # a crafted link cannot put its own words on the page
    crafted = await http.get("/dead-letters", params={"done": "Your password expired: call +1 555"})
    assert "password expired" not in crafted.text
    # a bearer token is not a cookie: no CSRF to forge, the token is the proof
    by_token = await http.post("/apps/jira/guard/release", data={}, headers={"authorization": f"Bearer {ADMIN}"},
                               cookies={})
    assert by_token.status_code == 303
    assert actions.calls[-1] == ("guard", "release", APP_ID, None, "ops-admin (token)")


async def test_sign_out_ends_the_session(console):
    http, _, db = console
    csrf = await sign_in(http, VIEWER)
    assert await db.console_sessions.count_documents({}) == 1
    out = await http.post("/logout", data={"csrf": csrf})
    assert out.status_code == 303
    assert await db.console_sessions.count_documents({}) == 0
    assert (await http.get("/apps")).status_code == 401


async def test_a_wrong_token_or_an_expired_form_opens_no_session(console):
    http, _, db = console
    page = await http.get("/login")
    pre = re.search(r'name="pre" value="([^"]+)"', page.text)[1]
    wrong = await http.post("/login/token", data={"pre": pre, "token": "not-the-token-0123456"})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    http.cookies.clear()
    stale = await http.post("/login/token", data={"pre": pre, "token": VIEWER})
    assert stale.status_code == 403
    assert await db.console_sessions.count_documents({}) == 0


async def test_a_link_cannot_put_words_on_the_sign_in_page(console):
    http, _, _ = console
    page = await http.get("/login", params={"error": "Your account is locked: call +1 555 0100"})
    assert page.status_code == 200 and "locked" not in page.text


async def test_a_host_header_of_another_name_is_refused(console):
    http, _, _ = console
    assert (await http.get("/login", headers={"host": "evil.example"})).status_code == 400


async def test_audit_filters_page_and_refuse_bad_values(console):
    http, _, db = console
    await sign_in(http, VIEWER)
    now = datetime.now(UTC)
    await db.audit.insert_many([
        {"at": now - timedelta(seconds=10 - i), "service": "scim-dispatcher", "step": step, "org": ORG,
         "app_id": APP_ID, "okta_user_id": USER_ID if i % 2 == 0 else "00uSomeoneElse000001", "trace_id": TRACE,
         "detail": f"record {i}"}
        for i, step in enumerate(["received", "planned", "retried", "applied", "applied"])])
    mine = await http.get("/audit", params={"user": USER_ID, "app": "jira"})
    assert mine.status_code == 200
    assert mine.text.count('data-step="') == 3 and "record 4" in mine.text and "record 1" not in mine.text
    paged = await http.get("/audit", params={"limit": 2})
    assert paged.text.count('data-step="') == 2
    older = re.search(r'href="([^"]+)" id="next-page"', paged.text)[1].replace("&amp;", "&")
    second = await http.get(older)
    assert second.text.count('data-step="') == 2 and "record 2" in second.text and "record 4" not in second.text
    since = await http.get("/audit", params={"since": "-1h", "status": "applied"})
    assert since.text.count('data-step="applied"') == 2
    for params, message in (({"since": "yesterday-ish"}, "since: not a date"), ({"limit": "100000"}, "limit: between"),
                            ({"user": "alice@example.com"}, "user: an Okta id"), ({"status": "nope"}, "status: one of"),
                            ({"app": "no-such-app"}, "app: a connector name"), ({"trace": "xyz"}, "trace: 32"),
                            ({"since": "0001-01-01T00:00+01:00"}, "since: not a date"),
                            ({"until": "9999-12-31T23:59-01:00"}, "until: not a date"), ({"until": "9999-06-01"}, "until: a date between"),
                            ({"after": "0001-01-01T00:00:00+01:00~656565656565656565656565"}, "after: not a page"),
                            ({"since": "2026-12-06", "until": "2026-12-05"}, "since must be before until")):
        refused = await http.get("/audit", params=params)
        assert refused.status_code == 400 and message in refused.text, params


async def test_one_changes_timeline_shows_each_step_with_its_offset_and_links_the_trace(console):
    http, _, db = console
    await sign_in(http, VIEWER)
    start = datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)
    await db.audit.insert_many([
        {"at": start, "service": "queue-poller", "step": "received", "org": ORG, "app_id": APP_ID,
         "okta_user_id": USER_ID, "trace_id": TRACE},
        {"at": start + timedelta(milliseconds=40), "service": "translator", "step": "planned", "org": ORG,
         "app_id": APP_ID, "okta_user_id": USER_ID, "trace_id": TRACE, "plan_version": 3},
        {"at": start + timedelta(milliseconds=900), "service": "scim-dispatcher", "step": "retried", "org": ORG,
         "app_id": APP_ID, "okta_user_id": USER_ID, "trace_id": TRACE, "scim_method": "PUT", "scim_status": 503,
         "duration_ms": 12.0},
        {"at": start + timedelta(milliseconds=2100), "service": "scim-dispatcher", "step": "applied", "org": ORG,
         "app_id": APP_ID, "okta_user_id": USER_ID, "trace_id": TRACE, "scim_method": "PUT", "scim_status": 200,
         "duration_ms": 30.0}])
    page = await http.get(f"/changes/{TRACE}")
    assert page.status_code == 200
    steps = re.findall(r'<li class="s-\w+" data-step="(\w+)">', page.text)
    assert steps == ["received", "planned", "retried", "applied"]
    assert "+2100 ms" in page.text and "(+1200 ms)" in page.text and "→ <strong>503</strong>" in page.text
    assert f'href="http://localhost:16686/trace/{TRACE}"' in page.text
    assert (await http.get("/changes/not-a-trace")).status_code == 400
    assert (await http.get(f"/changes/{'1' * 32}")).status_code == 404


async def test_previews_and_provisions_are_rate_limited_and_keep_okta_budget_for_the_services(console):
    http, actions, db = console
    csrf = await sign_in(http, ADMIN)
    form = {"csrf": csrf, "user": USER_ID, "app": "jira"}
    first = await http.post("/users/preview", data=form)
    assert first.status_code == 200 and "would send PUT" in first.text and "***" in first.text
    second = await http.post("/users/provision", data=form)
    assert second.status_code == 303 and second.headers["location"].startswith(f"/audit?user={USER_ID}")
    third = await http.post("/users/preview", data=form)
    if third.status_code == 200:  # the minute turned between the posts: the counter starts again
        third = await http.post("/users/preview", data=form)
        third = third if third.status_code == 429 else await http.post("/users/preview", data=form)
    assert third.status_code == 429 and "CONSOLE_ACTIONS_PER_MINUTE" in third.text
    assert int(third.headers["retry-after"]) >= 1
    assert [c[0] for c in actions.calls][:2] == ["preview", "provision"]
    assert actions.calls[1][3] == "ops-admin (token)"
    # the budget: a bucket the preview reads from with less than the reserve left refuses it
    await db.console_rate.delete_many({})
    await db.observed.insert_one({"org": ORG, "kind": "budget", "source": "translator-1", "at": datetime.now(UTC),
                                  "buckets": {"user": {"limit": 600, "remaining": 20, "reset": 1_900_000_000}}})
    low = await http.post("/users/preview", data=form)
    assert low.status_code == 429 and "user budget is low: 20 of 600 left" in low.text
    calls = len(actions.calls)
    assert calls <= 4


async def test_bad_one_user_input_is_a_clear_400(console):
    http, actions, _ = console
    csrf = await sign_in(http, ADMIN)
    assert "choose an app" in (await http.post("/users/preview", data={"csrf": csrf, "user": USER_ID,
                                                                      "app": "nope"})).text
    assert (await http.post("/users/preview", data={"csrf": csrf, "user": "", "app": "jira"})).status_code == 400
    assert actions.calls == []


@pytest.mark.parametrize("console", ["oidc"], indirect=True)
async def test_a_forged_or_replayed_oidc_callback_is_refused_before_okta_is_asked(console):
    """A callback this browser did not start (no sign-in cookie, or another state) or whose sign-in is gone (used
    once already, expired) opens no session and never reaches the token endpoint (here: nobody answers there)."""
    http, _, db = console
    forged = await http.get("/oidc/callback", params={"code": "stolen-code", "state": "guessed-state"})
    assert forged.status_code == 400 and "not started in this browser" in forged.text
    http.cookies.set("bridge_console_login", "guessed-state", path="/")
    unknown = await http.get("/oidc/callback", params={"code": "stolen-code", "state": "guessed-state"})
    assert unknown.status_code == 400 and "already used or has expired" in unknown.text
    # an error answer is shown only for this browser's own sign-in, and only Okta's error code, not free text
    http.cookies.clear()
    crafted = await http.get("/oidc/callback", params={"error": "access_denied", "error_description": "call us",
                                                       "state": "guessed-state"})
    assert crafted.status_code == 400 and "call us" not in crafted.text and "not started" in crafted.text
    http.cookies.set("bridge_console_login", "guessed-state", path="/")
    refused = await http.get("/oidc/callback", params={"error": "access_denied", "error_description": "call us",
                                                       "state": "guessed-state"})
    assert refused.status_code == 400 and "access_denied" in refused.text and "call us" not in refused.text
    assert await db.console_sessions.count_documents({}) == 0


async def test_without_oidc_the_callback_does_not_exist(console):
    http, _, _ = console
    assert (await http.get("/oidc/callback", params={"code": "x", "state": "y"})).status_code == 404


async def test_pages_carry_security_headers(console):
    http, _, _ = console
    page = await http.get("/login")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "httponly" in page.headers["set-cookie"].lower() and "samesite=lax" in page.headers["set-cookie"].lower()


@pytest.mark.parametrize("target, expected", [
    ("/audit?user=00u1", "/audit?user=00u1"), ("//evil.example/x", "/"), ("/\t/evil.example", "/"),
    ("/\\evil.example", "/"), ("https://evil.example", "/"), ("/apps//x", "/"), ("", "/")])
def test_a_sign_in_returns_only_to_a_path_of_the_console(target, expected):
    from bridge_console.app import _local

    assert _local(target) == expected


async def test_a_tokens_session_ends_when_the_token_is_removed_and_follows_a_changed_role(console, mongo_db):
    """A session opened with a token holds only while API_TOKENS still has that token: checked at every request."""
    http, _, db = console
    await sign_in(http, ADMIN)
    assert (await http.get("/apps")).status_code == 200
    doc = await db.console_sessions.find_one({})
    assert doc["token"] == hash_token(ADMIN) and ADMIN not in str(doc)  # the digest, never the token
    sessions = Sessions(db, 3600)
    sid = http.cookies.get("bridge_console")
    now_viewer = ApiTokens.parse(f"ops-admin:viewer:{ADMIN}")
    assert (await sessions.get(sid, now_viewer)).role == "viewer"
    assert await sessions.get(sid, ApiTokens.parse("ops-admin:operator:another-token-0123456789")) is None
    assert await sessions.get(sid, ApiTokens.parse(f"someone:operator:{ADMIN}")) is None


async def test_the_error_rate_counts_changes_that_failed_for_good_not_retried_attempts(console):
    http, _, db = console
    await sign_in(http, VIEWER)
    now = datetime.now(UTC)
    steps = ["failed", "retried", "failed", "retried", "applied",  # one change: two failed attempts, then applied
             "applied", "applied", "failed", "dead_lettered"]  # two applied; one dead-lettered in the end
    await db.audit.insert_many([{"at": now - timedelta(seconds=30 - i), "service": "scim-dispatcher", "step": s,
                                 "org": ORG, "app_id": APP_ID} for i, s in enumerate(steps)])
    page = await http.get("/apps")
    assert "25.0 %" in page.text and "2 retried attempt(s)" in page.text  # 1 of 4 changes
    assert "h-failing" in page.text and "1 change(s) dead-lettered" in page.text


async def test_odd_user_values_are_refused_before_okta_is_asked(console):
    http, actions, _ = console
    csrf = await sign_in(http, ADMIN)
    for user in (".", "..", "a/b", "x?y", "a b", "%2e%2e"):
        refused = await http.post("/users/preview", data={"csrf": csrf, "user": user, "app": "jira"})
        assert refused.status_code == 400, user
    assert actions.calls == []


async def test_a_failing_action_is_a_502_with_a_masked_reason_not_a_traceback(console):
    http, actions, _ = console
    csrf = await sign_in(http, ADMIN)

    async def broker_down(*_):
        raise ConnectionError("connection to amqp://bridge-console:hunter2@rabbit/ refused for alice@example.com")
    actions.replay = broker_down
    actions.dead_letters = broker_down
    actions.preview = broker_down
    page = await http.get("/dead-letters")
    assert page.status_code == 502 and "reading the dead letters failed: ConnectionError" in page.text
    replay = await http.post("/dead-letters/replay", data={"id": "x", "csrf": csrf})
    assert replay.status_code == 502 and "hunter2" not in replay.text
    preview = await http.post("/users/preview", data={"csrf": csrf, "user": "alice@example.com", "app": "jira"})
    assert preview.status_code == 502 and "alice@example.com" not in preview.text.split("<main>")[1]


async def test_discarding_held_deactivations_needs_the_confirmation(console):
    http, actions, _ = console
    csrf = await sign_in(http, ADMIN)
    refused = await http.post("/apps/jira/guard/discard", data={"csrf": csrf})
    assert refused.status_code == 400 and actions.calls == []
    done = await http.post("/apps/jira/guard/discard", data={"csrf": csrf, "confirm": "yes"})
    assert done.status_code == 303 and actions.calls[-1][:2] == ("guard", "discard")


async def test_a_sign_in_keeps_the_pages_filters(console):
    http, _, _ = console
    sent = await http.get("/audit?status=applied&since=-1h", headers={"accept": "text/html"})
    assert sent.status_code == 303
    assert sent.headers["location"] == "/login?next=%2Faudit%3Fstatus%3Dapplied%26since%3D-1h"
    missing = await http.get("/no-such-page", headers={"accept": "text/html"})
    assert missing.status_code == 404 and "<!doctype html>" in missing.text
