"""The drift check's classification, on fakes of Okta's listing and the target's listing (the e2e test runs the
command against real processes)."""

from __future__ import annotations

from okta_bridge.connectors import AppConnector
from okta_bridge.okta_client import OktaBadAnswerError
from scim_dispatcher.adapters.scim_user import ScimUser
from scim_dispatcher.drift import check_app

APP = AppConnector(okta_app_id="0oaAPPxxxxxxxxxxxxxx", name="jira", base_url="https://target.invalid/scim/v2",
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
    """Okta's listing of the app's users (the user embedded unless ``embed`` is False) and its user reads: the
    batched listing and by id as ``OktaClient`` answers them (``None``: 404; ``bad``: an unreadable answer)."""

    def __init__(self, users: dict[str, tuple[str, str]], embed: bool = True) -> None:
        self.users = users  # id -> (userName, status)
        self.embed = embed
        self.gone: set[str] = set()  # 404 by id
        self.bad: set[str] = set()  # an answer that is not a readable user
        self.left_out: set[str] = set()  # ids the batched listing leaves out
        self.reads: list[list[str]] = []

    def user(self, uid: str) -> dict:
        return {"id": uid, "status": self.users[uid][1], "profile": {"login": self.users[uid][0]}}

    async def list_app_users(self, app_id: str):
        assert app_id == APP.okta_app_id
        yield [{"id": uid, "credentials": {"userName": name}, **({"_embedded": {"user": self.user(uid)}}
                                                                 if self.embed else {})}
               for uid, (name, _) in self.users.items()]

    async def list_users_by_ids(self, user_ids: list[str]) -> dict[str, dict]:
        self.reads.append(list(user_ids))
        return {u: self.user(u) for u in user_ids if u not in self.gone | self.bad | self.left_out}

    async def get_users(self, user_ids: list[str]) -> dict[str, dict | None]:
        [uid] = user_ids
        if uid in self.bad:
            raise OktaBadAnswerError("okta GET /api/v1/users/{id} -> 200: user 00u? has no status", 200)
        return {uid: None if uid in self.gone else self.user(uid)}


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


async def test_an_account_that_is_someone_elses_shows_as_adoption_held_not_unlinked_or_missing():
    """The dispatcher never adopts an account another link holds or whose externalId names another Okta user; the
    drift check shows those cases for a person, and a full sync would not change them (not repairable)."""
    okta = FakeOkta({"00u1": ("ann@example.com", "ACTIVE"), "00u2": ("bob@example.com", "ACTIVE"),
                     "00u4": ("dee@example.com", "ACTIVE")})
    target = FakeTarget([account("t1", "ann@example.com", external="00u9other"),  # names another Okta user
                         account("t2", "bob@example.com"),  # held by 00u7's link
                         account("t4", "dee@example.com")])  # nobody's: adopted as usual
    drift = await check_app(APP, okta, target, {"00u7": "t2"})
    assert drift.found["adoption_held"] == ["00u1", "00u2"]
    assert drift.found["unlinked"] == ["00u4"]
    assert drift.found["missing"] == [] and drift.found["unknown"] == []
    assert drift.found["should_be_inactive"] == ["00u7"]  # 00u7 is no longer assigned: its own account
    assert drift.repairable == 2  # 00u4's link and 00u7's deactivation; the held cases stay for a person


async def test_a_target_listing_that_never_ends_fails_the_check_and_reports_nothing():
    """A target that ignores startIndex answers the same page forever: the check stops with a clear error instead
    of taking a partial listing for the whole (which would report the rest as missing, and a repair act on it)."""
    import httpx
    import pytest

    from scim_dispatcher.adapters import ScimClient, ScimPermanentError

    page = {"totalResults": 10**6, "Resources": [{"id": "t1", "userName": "ann@example.com", "active": True}]}
    served = []

    def forever(request: httpx.Request) -> httpx.Response:
        served.append(request)
        return httpx.Response(200, json=page)

    class NoOkta:
        async def list_app_users(self, app_id: str):
            raise AssertionError("Okta is not read for an app whose target listing failed")
            yield []

    scim = ScimClient(httpx.AsyncClient(transport=httpx.MockTransport(forever)), APP.base_url, "2.0")
    with pytest.raises(ScimPermanentError, match="ignores startIndex"):
        await check_app(APP, NoOkta(), scim, {"00u1": "t1"})
    assert len(served) == 2


async def test_a_listing_without_the_embedded_user_reads_the_users_and_reports_only_real_drift():
    """Without ``_embedded.user`` every assigned user once read as gone: "should be inactive", which --repair would
    act on. The users are read as the full sync reads them; only a 404 by id means gone."""
    okta = FakeOkta({"00u1": ("ann@example.com", "ACTIVE"), "00u2": ("bob@example.com", "ACTIVE"),
                     "00u3": ("cy@example.com", "ACTIVE"), "00u4": ("di@example.com", "ACTIVE")}, embed=False)
    okta.left_out = {"00u2"}  # the batched listing leaves it out: read by id, found
    okta.gone = {"00u3"}  # deleted in Okta for real
    okta.bad = {"00u4"}  # Okta answers something unreadable
    target = FakeTarget([account(f"t{i}", login, external=f"00u{i}")
                         for i, login in enumerate(["ann@example.com", "bob@example.com", "cy@example.com",
                                                    "di@example.com"], start=1)])
    drift = await check_app(APP, okta, target, {f"00u{i}": f"t{i}" for i in range(1, 5)})
    assert drift.found["should_be_inactive"] == ["00u3"]
    assert drift.found["unreadable"] == ["00u4"]
    assert drift.found["missing"] == [] and drift.found["unknown"] == []
    assert drift.repairable == 1, "an unreadable user is reported, never repaired"
    assert okta.reads == [["00u1", "00u2", "00u3", "00u4"]]


async def test_embedded_users_are_used_as_they_are_without_reading_okta_again():
    okta = FakeOkta({"00u1": ("ann@example.com", "ACTIVE"), "00u2": ("bob@example.com", "DEPROVISIONED")})
    drift = await check_app(APP, okta, FakeTarget([account("t1", "ann@example.com", external="00u1"),
                                                   account("t2", "bob@example.com", external="00u2")]),
                            {"00u1": "t1", "00u2": "t2"})
    assert drift.found["should_be_inactive"] == ["00u2"] and drift.repairable == 1
    assert okta.reads == []
