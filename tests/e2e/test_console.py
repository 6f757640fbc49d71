"""The console end to end, in a real headless Chromium (tests/harness/browser.py), on the whole pipeline: the real
broker and database, the services as processes, the Okta simulator as the OIDC authorization server and the demo
target. A person signs in with Okta (authorization code + PKCE; the role from the groups claim), watches a real change
in the audit log through its filters, opens its timeline and the link to its trace, previews and provisions a user on
demand (audited with their name); a viewer sees but cannot replay or provision; a replayed or forged OIDC callback is
refused.

``CONSOLE_SCREENSHOTS=1`` writes the pages' screenshots to docs/img/ (the README's); otherwise to the test's tmp dir.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually
from tests.e2e.scenario import audit_records, start_scenario
from tests.harness.browser import screenshot, wait_for, wait_text

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ADMIN, VIEWER, PASSWORD = "ops.admin@example.com", "ops.viewer@example.com", "Correct-Horse-Battery-42"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def shot(browser, tmp_path: Path, name: str) -> None:
    where = DOCS_IMG if os.environ.get("CONSOLE_SCREENSHOTS") else tmp_path
    where.mkdir(parents=True, exist_ok=True)
    assert screenshot(browser, where / f"console-{name}.png").stat().st_size > 10_000


def sign_in_with_okta(browser, console_url: str, login: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{console_url}/apps")
    wait_for(browser, "#sign-in-okta").click()  # -> the simulator's sign-in page (the authorization server)
    wait_for(browser, "input[name=username]").send_keys(login)
    browser.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(PASSWORD)
    browser.find_element(By.ID, "okta-signin-submit").click()
    wait_for(browser, "#who-name")  # back at the console, signed in
    assert browser.find_element(By.ID, "who-name").text == login


def post_in_page(browser, path: str, fields: dict[str, str]) -> int:
    """A form post made by the page's own JavaScript with the page's cookies (what a crafted request from a signed-in
    browser would be); the answer's status."""
    return browser.execute_async_script("""
        const [path, fields, done] = arguments;
        fetch(path, {method: 'POST', body: new URLSearchParams(fields), redirect: 'manual'})
          .then(r => done(r.status)).catch(e => done(String(e)));""", path, fields)


async def test_sign_in_watch_a_change_follow_it_preview_and_provision_and_a_viewer_cannot_act(stack, browser,
                                                                                              tmp_path):
    stack.use_console_oidc()
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target)
        for login, group in ((ADMIN, "okta-bridge-admins"), (VIEWER, "okta-bridge-viewers")):
            group_id = await okta.create_group(group)
            person = await okta.create_user({"login": login, "email": login, "firstName": "Ops",
                                             "lastName": group.split("-")[-1].title()})
            await okta.set_password(person, PASSWORD)
            await okta.add_group_member(group_id, person)
        stack.start_console()
        # a real change through the pipeline
        alice = await sc.new_user("alice.console@example.com")
        await okta.assign_user(sc.app_id, alice)
        await sc.wait_active("alice.console@example.com")
        applied = await eventually(lambda: sc.audit(user=alice, status="applied"), 60, "alice's change audited")
        trace_id = applied[0]["trace_id"]
        assert trace_id

        # --- an admin signs in with Okta
        sign_in_with_okta(browser, stack.console_url, ADMIN)
        assert browser.find_element(By.ID, "who-role").text == "admin"
        row = wait_for(browser, 'tr[data-app="jira"]')
        assert "ok" in row.text and "never" not in row.text  # healthy, with a last success
        shot(browser, tmp_path, "apps")
        row.find_element(By.LINK_TEXT, "jira").click()  # the app's page: health, counts, circuit, guard, recent
        assert wait_for(browser, "#app-health").text == "ok"
        assert "applied" in browser.find_element(By.ID, "counts").text
        assert "closed" in browser.find_element(By.CSS_SELECTOR, "dl.facts").text
        assert browser.find_elements(By.CSS_SELECTOR, "#audit-rows tbody tr[data-step]")

        # --- the audit log, filtered to alice's applied changes
        browser.get(f"{stack.console_url}/audit")
        wait_for(browser, "#filters")
        browser.find_element(By.NAME, "user").send_keys(alice)
        Select(browser.find_element(By.NAME, "status")).select_by_value("applied")
        Select(browser.find_element(By.NAME, "app")).select_by_value("jira")
        browser.find_element(By.ID, "apply-filters").click()
        wait_for(browser, "#audit-rows")
        assert f"user={alice}" in browser.current_url and "status=applied" in browser.current_url
        steps = [r.get_attribute("data-step") for r in browser.find_elements(By.CSS_SELECTOR, "#audit-rows tbody tr")]
        assert steps and set(steps) == {"applied"}
        shot(browser, tmp_path, "audit")

        # --- its timeline: received, planned, applied with the SCIM status; the link to the trace in Jaeger
        browser.find_element(By.CSS_SELECTOR, "#audit-rows a.timeline").click()
        wait_for(browser, "#timeline")
        timeline = [li.get_attribute("data-step") for li in browser.find_elements(By.CSS_SELECTOR, "#timeline li")]
        assert timeline[0] == "received" and "planned" in timeline and timeline[-1] == "applied", timeline
        assert re.search(r"(POST|PUT|PATCH) .*→ (200|201)", browser.find_element(By.ID, "timeline").text)
        assert browser.find_element(By.ID, "trace-link").get_attribute("href") == \
            f"http://localhost:16686/trace/{trace_id}"
        shot(browser, tmp_path, "timeline")

        # --- preview and provision one user on demand
        await okta.update_profile(alice, {"displayName": "Alice Console Tester"})
        browser.get(f"{stack.console_url}/users")
        wait_for(browser, "#one-user")
        browser.find_element(By.ID, "user").send_keys("alice.console@example.com")
        browser.find_element(By.ID, "preview").click()
        result = wait_for(browser, "#preview-result")
        assert "Alice Console Tester" in result.text and "would send PUT" in result.text
        shot(browser, tmp_path, "preview")
        browser.find_element(By.ID, "provision").click()
        wait_for(browser, "#done")

        async def provisioned():
            records = await audit_records(stack, user=alice)
            asked = [r for r in records if r.get("event_type") == "operator:provision"]
            return asked if asked and any(r["step"] == "applied" and r["at"] > asked[0]["at"] for r in records) \
                else None
        asked = await eventually(provisioned, 60, "the provision on demand applied")
        assert asked[0]["actor"] == f"{ADMIN} (Okta sign-in)" and asked[0]["service"] == "console"
        account = (await sc.target_users())["alice.console@example.com"][0]
        assert account.get("displayName") == "Alice Console Tester"

        # --- sign out; a viewer sees the dead letters but cannot replay, and cannot provision
        wait_for(browser, "button.link").click()
        wait_for(browser, "#sign-in-okta")
        sign_in_with_okta(browser, stack.console_url, VIEWER)
        assert browser.find_element(By.ID, "who-role").text == "viewer"
        browser.get(f"{stack.console_url}/dead-letters")
        wait_text(browser, "An admin can replay")
        assert not browser.find_elements(By.ID, "replay")
        csrf = browser.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
        assert post_in_page(browser, "/dead-letters/replay", {"csrf": csrf, "id": "anything"}) == 403
        assert post_in_page(browser, "/users/provision", {"csrf": csrf, "user": alice, "app": "jira"}) == 403
        browser.get(f"{stack.console_url}/users")
        wait_for(browser, "#one-user")
        assert not browser.find_elements(By.ID, "provision")
    # nothing the viewer asked for was done: the only provision on demand is the admin's
    records = await audit_records(stack, user=alice)
    assert len([r for r in records if r.get("event_type") == "operator:provision"]) == 1


def _hidden_fields(html: str) -> dict[str, str]:
    fields = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name, value = re.search(r'name="([^"]*)"', tag), re.search(r'value="([^"]*)"', tag)
        if name and 'type="hidden"' in tag:
            fields[name[1]] = (value[1] if value else "").replace("&amp;", "&")
    return fields


async def test_a_replayed_or_forged_oidc_callback_is_refused(stack):
    """The authorization code flow by hand (httpx, no browser): the callback works once; the same callback again is
    refused (its sign-in was taken), and so is the callback replayed from another browser (no sign-in cookie)."""
    stack.use_console_oidc()
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        await start_scenario(stack, okta, target)
        group_id = await okta.create_group("okta-bridge-admins")
        person = await okta.create_user({"login": ADMIN, "email": ADMIN, "firstName": "Ops", "lastName": "Admin"})
        await okta.set_password(person, PASSWORD)
        await okta.add_group_member(group_id, person)
        stack.start_console()
    async with httpx.AsyncClient(timeout=30) as http:
        start = await http.get(f"{stack.console_url}/login/okta")
        assert start.status_code == 302
        authorize = start.headers["location"]
        query = parse_qs(urlsplit(authorize).query)
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0] and query["nonce"][0]
        form_page = await http.get(authorize)
        assert form_page.status_code == 200
        action = re.search(r'<form[^>]*action="([^"]+)"', form_page.text)[1].replace("&amp;", "&")
        signed = await http.post(httpx.URL(authorize).join(action),
                                 data={**_hidden_fields(form_page.text), "username": ADMIN, "password": PASSWORD})
        assert signed.status_code == 302, signed.text[:300]
        callback = signed.headers["location"]
        assert callback.startswith(f"{stack.console_url}/oidc/callback?")
        first = await http.get(callback)
        assert first.status_code == 303 and "bridge_console" in first.cookies
        again = await http.get(callback)  # the sign-in cookie went with the first: not this browser's any more
        assert again.status_code == 400 and "not started in this browser" in again.text
        # even with the sign-in cookie put back, the sign-in was taken once: refused before Okta is asked again
        state = parse_qs(urlsplit(callback).query)["state"][0]
        http.cookies.set("bridge_console_login", state, domain="127.0.0.1", path="/oidc")
        replayed = await http.get(callback)
        assert replayed.status_code == 400 and "already used" in replayed.text
    async with httpx.AsyncClient(timeout=30) as other_browser:
        forged = await other_browser.get(callback)
        assert forged.status_code == 400 and "not started in this browser" in forged.text
        assert "bridge_console" not in forged.cookies
