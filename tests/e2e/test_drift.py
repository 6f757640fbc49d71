"""Drift check and reconcile: target-side changes the System Log never reports are found (dry run by default) and
repaired on request; the app's own local accounts are reported, never touched."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually
from tests.e2e.scenario import audit_records, start_scenario

pytestmark = pytest.mark.e2e


def drift(stack, *args: str) -> subprocess.CompletedProcess:
    env = {**stack.service_env("cli"), "USER": "ci-operator", "COLUMNS": "220"}
    return subprocess.run([sys.executable, "-m", "bridgectl", "drift", *args], env=env,
                          capture_output=True, text=True, timeout=180)


async def test_drift_is_reported_then_repaired(stack):
    stack.start_fixtures()
    async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
        sc = await start_scenario(stack, okta, target, preassigned=3)
        logins = [f"pre{n}.user@example.com" for n in range(3)]
        await okta.deactivate_user(sc.users[logins[2]])
        await sc.wait_active(logins[2], active=False)
        accounts = await sc.target_users()
        base = f"{stack.target_url}/scim/v1"
        headers = {"Authorization": f"Bearer {stack.target_token}"}
        async with httpx.AsyncClient(headers=headers) as http:  # an admin of the app edits it by hand
            await http.delete(f"{base}/Users/{accounts[logins[0]][0]['id']}")
            for login, active in ((logins[1], False), (logins[2], True)):
                account = accounts[login][0]
                await http.put(f"{base}/Users/{account['id']}", json={**account, "active": active})
            await http.post(f"{base}/Users", json={"schemas": ["urn:scim:schemas:core:1.0"],
                                                    "userName": "local.admin@example.com", "active": True})
            double = (await http.post(f"{base}/Users", json={  # a second account of one Okta user
                "schemas": ["urn:scim:schemas:core:1.0"], "userName": "pre1.copy@example.com", "active": True,
                "externalId": sc.users[logins[1]]})).json()
            other = await sc.new_user("other.person@example.com")  # in Okta, not assigned to the app
            taken = (await http.post(f"{base}/Users", json={  # an account whose externalId names that other user
                "schemas": ["urn:scim:schemas:core:1.0"], "userName": "held.user@example.com", "active": True,
                "externalId": other})).json()
        held_user = await sc.new_user("held.user@example.com")
        await okta.assign_user(sc.app_id, held_user)  # its app username finds the other user's account

        async def held():
            return [r for r in await audit_records(stack, user=held_user) if r.get("reason") == "adoption_held"]
        assert (await eventually(held, 60, "the adoption held for a person"))[0]["step"] == "held"

        dry = drift(stack)
        assert dry.returncode == 1, dry.stdout + dry.stderr
        out = dry.stdout
        lines = {l.split(":")[0]: l for l in out.splitlines() if l.startswith("jira ")}
        assert sc.users[logins[0]] in lines["jira missing"] and sc.users[logins[1]] in lines["jira missing"]
        assert sc.users[logins[0]] in lines["jira broken_link"]
        assert sc.users[logins[2]] in lines["jira should_be_inactive"]
        assert sc.users[logins[1]] in lines["jira duplicate"]
        assert "jira unknown" in lines and double["id"] not in lines["jira unknown"]
        assert held_user in lines["jira adoption_held"] and taken["id"] not in lines["jira unknown"]
        assert (await sc.target_users())[logins[1]][0]["active"] is False, "a dry run changes nothing"

        repaired = drift(stack, "--repair")
        assert repaired.returncode == 1 and "full sync requested" in repaired.stdout
        assert "duplicates need a person" in repaired.stdout and held_user in repaired.stdout
        await sc.wait_active(logins[0])
        await sc.wait_active(logins[1])
        await sc.wait_active(logins[2], active=False)

        async with httpx.AsyncClient(headers=headers) as http:  # the person merges the two accounts
            assert (await http.delete(f"{base}/Users/{double['id']}")).status_code == 204
            account = (await http.get(f"{base}/Users/{taken['id']}")).json()
            assert account["externalId"] == other, "a held adoption writes nothing to the account"
            # and decides the held account is the new user's: the externalId goes, the user's next change adopts it
            fixed = {k: v for k, v in account.items() if k not in ("externalId", "meta")}
            assert (await http.put(f"{base}/Users/{taken['id']}", json=fixed)).status_code == 200
        await okta.update_profile(held_user, {"title": "Adopted"})
        assert (await sc.wait_active("held.user@example.com"))["id"] == taken["id"]

        async def clean():
            return drift(stack).returncode == 0
        await eventually(clean, 60, "no repairable drift left")
        assert "local.admin@example.com" in await sc.target_users(), "local accounts are never touched"
        trail = [r for r in await audit_records(stack) if r.get("event_type") == "operator:drift"]
        assert any("full sync requested" in r["detail"] and "ci-operator" in r["detail"] for r in trail)
        assert any("held adoptions need a person" in r["detail"] for r in trail)
