"""SCIM 2.0 targets (the demo app's /v2/ side and PyPI's independent scim2-server) and accept_user_updates."""

from __future__ import annotations


import httpx
import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually
from tests.conftest import SCIM2_SERVER_TOKEN
from tests.e2e.scenario import quiet, start_scenario

pytestmark = pytest.mark.e2e


async def test_scim20_demo_target_full_lifecycle(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, preassigned=1, connector={
            "base_url": f"{stack.target_url}/scim/v2/", "deactivate_with": "PATCH", "suspended": "deactivate",
            "attribute_mappings": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department":
                                   "profile.department", "locale": None}})
        user = await sc.new_user("edsger.dijkstra@example.com")
        await okta.update_profile(user, {"department": "Algorithms"})
        await okta.assign_user(sc.app_id, user)
        account = await sc.wait_active("edsger.dijkstra@example.com")
        assert account["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"] == "Algorithms"
        assert "locale" not in account  # trimmed by the connector's mapping
        await okta.suspend_user(user)
        await sc.wait_active("edsger.dijkstra@example.com", active=False)
        patches = [r for r in await target.requests() if r["method"] == "PATCH"]
        assert patches and patches[-1]["body"]["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]
        posts = [r for r in await target.requests() if r["method"] == "POST"]
        assert posts[-1]["body"]["schemas"][0] == "urn:ietf:params:scim:schemas:core:2.0:User"
        assert posts[-1]["user_agent"] == "Okta SCIM Client 1.0.0"
        assert posts[-1]["body"]["password"] == "***REDACTED***"  # a random password on create, as Okta sends one
        [stored] = [u for u in await target.users() if u["userName"] == "edsger.dijkstra@example.com"]
        assert len(stored["_password"]) >= 16


async def test_independent_scim2_server(stack, scim2_server):
    """PyPI's scim2-server serves at the root: the URL says neither /v1/ nor /v2/, so scim_version says 2.0."""
    stack.start_fixtures()
    stack.extra_env["S2_TOKEN"] = SCIM2_SERVER_TOKEN
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, connector={
            "base_url": scim2_server + "/", "scim_version": "2.0",
            "auth": {"type": "header", "header_name": "Authorization", "value_env": "S2_TOKEN",
                     "value_prefix": "Bearer "}})
        user = await sc.new_user("donald.knuth@example.com")
        await okta.assign_user(sc.app_id, user)
        headers = {"Authorization": f"Bearer {SCIM2_SERVER_TOKEN}"}

        async def account(active: bool):
            async with httpx.AsyncClient() as http:
                r = await http.get(f"{scim2_server}/Users", headers=headers,
                                   params={"filter": 'userName eq "donald.knuth@example.com"'})
            found = r.json().get("Resources", [])
            return found[0] if len(found) == 1 and found[0].get("active", True) is active else None
        created = await eventually(lambda: account(True), 60, "user in scim2-server")
        assert created["externalId"] == user
        await okta.deactivate_user(user)
        await eventually(lambda: account(False), 60, "deactivated in scim2-server")


async def test_accept_user_updates_writes_changed_values_back_and_ignores_its_own_events(stack):
    """Run with OAuth 2.0 (a service app, private_key_jwt, DPoP): the write needs okta.apps.manage, and the event it
    causes is recognised as the bridge's own by the app's client id (the actor), not by an API token's id."""
    stack.use_oauth(dpop=True)
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, preassigned=1, connector={"accept_user_updates": True})
        login = "pre0.user@example.com"
        user = sc.users[login]
        await quiet(stack)  # no plan of the start left in flight to take the fault below
        account = (await sc.target_users())[login][0]
        # the target answers the PUT with what it stored: the new first name, and a displayName of its own
        changed = {**account, "displayName": "Set By Target", "name": {**account["name"], "givenName": "Pre"}}
        await target.add_fault(200, method="PUT", path_regex=r"^/scim/v1/Users/", body=changed,
                               content_type="application/json", times=1)
        await okta.update_profile(user, {"firstName": "Pre"})
        async with httpx.AsyncClient(headers={"Authorization": f"SSWS {stack.token}"}) as http:
            async def written():
                r = await http.get(f"{stack.okta_url}/api/v1/apps/{sc.app_id}/users/{user}")
                return r.json().get("profile", {}).get("displayName") == "Set By Target"
            await eventually(written, 60, "write-back to the Okta app-user profile")
        async def writeback_audited():
            records = await sc.audit(user=user, status="applied")
            return [r for r in records if r["event_type"] == "writeback"]
        records = await eventually(writeback_audited, 30, "write-back audit record")
        assert records[0]["detail"] == "wrote app-user profile: displayName"
        own = [e for e in await okta.events() if e["eventType"] == "application.user_membership.update"
               and e["actor"]["id"] == stack.oauth_client_id]
        assert own, "the simulator wrote the event our write caused"
        received = {r["event_uuid"] for r in await sc.audit(status="received")}
        assert not received & {e["uuid"] for e in own}, "our own write came back as work"
        assert not any("externalId" in (r["detail"] or "") for r in records)
        async with httpx.AsyncClient() as http:  # the services used OAuth tokens, not the SSWS token
            assert (await http.get(f"{stack.okta_url}/_admin/oauth/stats")).json()["tokens_issued"] >= 2
