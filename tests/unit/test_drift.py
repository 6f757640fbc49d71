"""The drift check's classification, on fakes of Okta's listing and the target's listing (the e2e test runs the
command against real processes)."""

from __future__ import annotations

from okta_bridge.connectors import AppConnector
from scim_dispatcher.adapters.scim_user import ScimUser
from scim_dispatcher.drift import check_app

APP = AppConnector(okta_app_id="0oaAPPxxxxxxxxxxxxxx", name="jira", base_url="http://target.invalid/scim/v2",
                   auth={"type": "none"})


def account(id_: str, user_name: str, active: bool = True, external: str | None = None) -> ScimUser:
    raw = {"id": id_, "userName": user_name, "active": active, **({"externalId": external} if external else {})}
    return ScimUser(id_, user_name, active, raw)


class FakeTarget:
    def __init__(self, accounts: list[ScimUser]) -> None:
        self.accounts = accounts

    async def list_users(self):
        yield self.accounts[:2]
        yield self.accounts[2:]


class FakeOkta:
    def __init__(self, users: dict[str, tuple[str, str]]) -> None:
        self.users = users  # id -> (userName, status)

    async def list_app_users(self, app_id: str):
        assert app_id == APP.okta_app_id
        yield [{"id": uid, "credentials": {"userName": name}, "_embedded": {"user": {"status": status}}}
               for uid, (name, status) in self.users.items()]


async def test_a_second_active_account_of_one_user_is_a_duplicate_for_a_person_not_a_sync():
    okta = FakeOkta({"00u1": ("ann@example.com", "ACTIVE"), "00u2": ("bob@example.com", "ACTIVE")})
    target = FakeTarget([account("t1", "ann@example.com", external="00u1"),
                         account("t1b", "ANN@example.com"),  # the doubled create: same login, other case
                         account("t2", "bob@example.com", external="00u2"),
                         account("t2old", "bob@example.com", active=False)])  # inactive: not a duplicate
    drift = await check_app(APP, okta, target, {"00u1": "t1", "00u2": "t2"})
    assert drift.found["duplicate"] == ["00u1"]
    assert drift.found["unknown"] == [], "a duplicate is named as one, not as an unknown local account"
    assert drift.repairable == 0, "a full sync cannot choose between two accounts"
    assert drift.accounts == 4 and drift.assigned == 2


async def test_an_unlinked_account_found_by_external_id_is_unlinked_not_duplicate():
    okta = FakeOkta({"00u1": ("ann@example.com", "ACTIVE"), "00u3": ("cy@example.com", "DEPROVISIONED")})
    target = FakeTarget([account("t1", "ann@example.com", external="00u1"),
                         account("t3", "cy@example.com"),
                         account("local", "admin@example.com")])
    drift = await check_app(APP, okta, target, {})
    assert drift.found["unlinked"] == ["00u1", "00u3"]
    assert drift.found["should_be_inactive"] == ["00u3"]
    assert drift.found["duplicate"] == [] and drift.found["missing"] == []
    assert drift.found["unknown"] == ["local"]
    assert drift.repairable == 3
