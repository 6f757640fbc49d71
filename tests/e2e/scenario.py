"""Helpers for end-to-end scenarios: a seeded org, the bridge started against it, and checks on the outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import aio_pika
import httpx

from demo_scim_target.admin_client import TargetAdmin
from tests.harness.devstack import DevStack
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually, jira_connector


@dataclass
class Scenario:
    stack: DevStack
    okta: SimulatorAdmin
    target: TargetAdmin
    app_id: str = ""
    users: dict[str, str] = field(default_factory=dict)  # login -> Okta user id

    async def new_user(self, login: str) -> str:
        first, last = login.split("@")[0].split(".") if "." in login.split("@")[0] else (login, "User")
        self.users[login] = await self.okta.create_user({"login": login, "email": login, "firstName": first,
                                                         "lastName": last})
        return self.users[login]

    async def target_users(self) -> dict[str, list[dict]]:
        by_name: dict[str, list[dict]] = {}
        for u in await self.target.users():
            by_name.setdefault(u["userName"].lower(), []).append(u)
        return by_name

    async def wait_active(self, login: str, active: bool = True, timeout: float = 90) -> dict:
        async def check():
            accounts = (await self.target_users()).get(login, [])
            return accounts[0] if len(accounts) == 1 and accounts[0].get("active") is active else None
        return await eventually(check, timeout, f"{login} active={active} in the target")

    async def assert_one_account_each(self) -> None:
        dupes = {name: len(a) for name, a in (await self.target_users()).items() if len(a) > 1}
        assert not dupes, f"duplicated accounts: {dupes}"

    async def audit(self, **params) -> list[dict]:
        return await audit_records(self.stack, **params)

    async def posts_for(self, login: str) -> int:
        count = 0
        for r in await self.target.requests():
            body = r.get("body") or {}
            if r["method"] == "POST" and r["path"].endswith("/Users") and isinstance(body, dict) \
                    and str(body.get("userName", "")).lower() == login and r.get("status") == 201:
                count += 1
        return count


async def start_scenario(stack: DevStack, okta: SimulatorAdmin, target: TargetAdmin, *, preassigned: int = 0,
                         connector: dict | None = None, env: dict | None = None) -> Scenario:
    sc = Scenario(stack, okta, target)
    sc.app_id = await okta.create_app("Jira", "jira")
    for n in range(preassigned):
        await okta.assign_user(sc.app_id, await sc.new_user(f"pre{n}.user@example.com"))
    stack.extra_env.update(env or {})
    stack.write_connectors([jira_connector(stack, sc.app_id, **(connector or {}))])
    stack.start_services()
    for n in range(preassigned):
        await sc.wait_active(f"pre{n}.user@example.com")
    return sc


async def audit_records(stack: DevStack, **params) -> list[dict]:
    """The audit trail of the stack's audit-recorder (newest first), through its HTTP API."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{stack.audit_url}/audit", params={"limit": 1000, **params},
                                  headers=stack.audit_headers)
        response.raise_for_status()
        return response.json()["items"]


async def quiet(stack: DevStack, seconds: float = 3.0) -> None:
    """Waits until the audit trail stops growing: every plan in flight has been applied."""
    seen: list[int] = []

    async def still():
        seen.append(len(await audit_records(stack)))
        enough = int(seconds / 0.25)
        return len(seen) > enough and len(set(seen[-enough:])) == 1
    await eventually(still, 120, "the bridge idle")


async def dead_letters(stack: DevStack) -> list[tuple[dict, bytes]]:
    """Reads (and requeues) what is in ``bridge.dead-letters`` of the stack's vhost."""
    out: list[tuple[dict, bytes]] = []
    connection = await aio_pika.connect(stack.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue("bridge.dead-letters")
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            out.append((dict(message.headers), message.body))
        await channel.close()  # unacked messages go back to the queue
    return out


def assert_no_secret(stack: DevStack, *texts: str) -> None:
    secrets = [stack.token, stack.target_token]
    corpus = "\n".join([stack.logs(), *texts])
    for secret in secrets:
        assert secret not in corpus, "a secret leaked into logs, audit or dead letters"


def dumps(obj) -> str:
    return json.dumps(obj, default=str)
