"""Dispatcher with a fake link store and a real ScimClient over ``httpx.MockTransport``: no duplicates, no
regressions, never a DELETE (design-notes: applying to targets without duplicates or reordering)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from demo_scim_target.admin_client import TargetAdmin
from demo_scim_target.app import create_app
from demo_scim_target.common import TargetConfig
from okta_bridge.contracts import AuditStep, MappedAttribute, PlanAction, ScimOperationPlanned
from scim_dispatcher.adapters import ScimClient
from scim_dispatcher.handlers import Dispatcher
from scim_dispatcher.ports import Link
from tests.unit.fakes import ORG, FakeLinks, FakeScimTarget, app_connector

JIRA = "0oa1jira"
BASE = "https://jira.lan/scim/v2"


def plan(version: int = 1, action: PlanAction = PlanAction.UPSERT, user_name: str = "ann@acme.com",
         user_id: str = "00u1", **extra: Any) -> ScimOperationPlanned:
    attrs = {"userName": user_name, "name.givenName": "Ann", "name.familyName": "Example",
             "emails": [{"value": user_name, "type": "work", "primary": True}], "externalId": user_id, **extra}
    return ScimOperationPlanned(org=ORG, app_id=JIRA, okta_user_id=user_id, version=version, action=action,
                                attributes=tuple(MappedAttribute(path=k, value=v) for k, v in attrs.items()),
                                unique_value=user_name, cause="test")


@pytest.fixture
def target() -> FakeScimTarget:
    return FakeScimTarget()


class Applier:
    """The engine's part for one key, as in ``engine.py``: read the link, apply, store the outcome's link (a refused
    store makes the outcome stale)."""

    def __init__(self, dispatcher: Dispatcher, links: FakeLinks) -> None:
        self.dispatcher, self.links = dispatcher, links

    async def apply(self, p: ScimOperationPlanned):
        outcome = await self.dispatcher.apply(p, await self.links.get(p.app_id, p.okta_user_id))
        if outcome.link is not None and not (await self.links.save_many([outcome.link]))[0]:
            outcome = outcome.stale(f"a newer plan than v{p.version} was applied meanwhile")
        return outcome


async def make(target: FakeScimTarget, **app_overrides: Any) -> Applier:
    app = app_connector(JIRA, "jira", base_url=BASE + "/", **app_overrides)
    http = httpx.AsyncClient(transport=httpx.MockTransport(target))
    client = ScimClient(http, BASE, app.version, unique_field=app.unique_user_field,
                        deactivate_with=app.deactivate_with)
    return Applier(Dispatcher({JIRA: app}, {JIRA: client}), FakeLinks())


async def test_create_posts_after_a_lookup_that_finds_nothing(target):
    d = await make(target)
    outcome = await d.apply(plan())
    assert target.calls() == ["GET", "POST"]
    assert target.requests[0][1] == "/Users"
    assert outcome.step is AuditStep.APPLIED and outcome.method == "POST"
    [created] = target.users.values()
    assert created["userName"] == "ann@acme.com" and created["active"] is True
    assert created["name"] == {"givenName": "Ann", "familyName": "Example"}
    assert "password" not in created  # sync_password is off
    link = await d.links.get(JIRA, "00u1")
    assert link == Link(created["id"], 1, True)


async def test_sync_password_sends_a_random_password_on_create(target):
    d = await make(target, actions={"sync_password": True})
    await d.apply(plan())
    [created] = target.users.values()
    assert isinstance(created["password"], str) and len(created["password"]) >= 16


async def test_an_account_found_by_lookup_is_linked_and_put_never_posted(target):
    """A create whose answer was lost: the target already has the account, so it is not created twice."""
    existing = target.add("ann@acme.com")
    d = await make(target)
    outcome = await d.apply(plan())
    assert target.calls() == ["GET", "PUT"]
    assert target.requests[1][1] == f"/Users/{existing}"
    assert outcome.target_id == existing and "linked existing" in outcome.detail
    assert (await d.links.get(JIRA, "00u1")).target_id == existing
    assert len(target.users) == 1


async def test_a_linked_account_is_read_by_id_then_put(target):
    d = await make(target)
    await d.apply(plan(1))
    uid = next(iter(target.users))
    target.requests.clear()
    await d.apply(plan(2, **{"name.givenName": "Anna"}))
    assert target.requests == [("GET", f"/Users/{uid}"), ("PUT", f"/Users/{uid}")]
    assert target.users[uid]["name"]["givenName"] == "Anna"
    assert (await d.links.get(JIRA, "00u1")).applied_version == 2


@pytest.mark.parametrize("stale_version", [1, 2])
async def test_a_stale_plan_is_skipped_without_any_http_call(target, stale_version):
    d = await make(target)
    await d.apply(plan(2))
    target.requests.clear()
    outcome = await d.apply(plan(stale_version, **{"name.givenName": "Old"}))
    assert outcome.step is AuditStep.SKIPPED_STALE
    assert target.requests == []
    assert (await d.links.get(JIRA, "00u1")).applied_version == 2


async def test_a_linked_account_gone_from_the_target_is_recreated(target):
    d = await make(target)
    await d.apply(plan(1))
    old = next(iter(target.users))
    del target.users[old]
    target.requests.clear()
    outcome = await d.apply(plan(2))
    assert target.calls() == ["GET", "GET", "POST"]  # 404 by id, lookup finds nothing, create
    new = next(iter(target.users))
    assert new != old and outcome.target_id == new
    assert (await d.links.get(JIRA, "00u1")).target_id == new


async def test_a_linked_account_gone_but_recreated_by_someone_is_relinked(target):
    d = await make(target)
    await d.apply(plan(1))
    old = next(iter(target.users))
    del target.users[old]
    other = target.add("ann@acme.com")
    target.requests.clear()
    await d.apply(plan(2))
    assert target.calls() == ["GET", "GET", "PUT"]
    assert (await d.links.get(JIRA, "00u1")).target_id == other


async def test_409_on_post_links_the_existing_account(target):
    target.conflict_on_post = True

    def racing(request: httpx.Request) -> httpx.Response:  # another writer creates it between lookup and POST
        if request.method == "POST":
            target.add("ann@acme.com")
        return target(request)

    app = app_connector(JIRA, "jira", base_url=BASE + "/")
    client = ScimClient(httpx.AsyncClient(transport=httpx.MockTransport(racing)), BASE, "2.0")
    d = Applier(Dispatcher({JIRA: app}, {JIRA: client}), FakeLinks())
    outcome = await d.apply(plan())
    assert target.calls() == ["GET", "POST", "GET", "PUT"]
    [uid] = target.users
    assert outcome.step is AuditStep.APPLIED and outcome.target_id == uid
    assert (await d.links.get(JIRA, "00u1")).target_id == uid


async def test_deactivate_sets_active_false_and_never_deletes(target):
    d = await make(target)
    await d.apply(plan(1))
    uid = next(iter(target.users))
    outcome = await d.apply(plan(2, PlanAction.DEACTIVATE))
    assert target.users[uid]["active"] is False
    assert "DELETE" not in target.calls()
    assert outcome.step is AuditStep.APPLIED and outcome.method == "PUT"
    assert await d.links.get(JIRA, "00u1") == Link(uid, 2, False)


async def test_deactivate_with_patch(target):
    d = await make(target, deactivate_with="PATCH")
    uid = target.add("ann@acme.com")
    await d.apply(plan(1, PlanAction.DEACTIVATE))
    assert target.calls() == ["GET", "PATCH"]
    assert target.users[uid]["active"] is False


async def test_deactivate_of_an_unlinked_account_finds_it_by_lookup(target):
    uid = target.add("ann@acme.com")
    d = await make(target)
    await d.apply(plan(1, PlanAction.DEACTIVATE))
    assert target.users[uid]["active"] is False
    assert (await d.links.get(JIRA, "00u1")).target_id == uid


async def test_deactivate_without_an_account_creates_nothing(target):
    d = await make(target)
    outcome = await d.apply(plan(1, PlanAction.DEACTIVATE))
    assert target.calls() == ["GET"]
    assert target.users == {} and outcome.step is AuditStep.APPLIED


async def test_deactivate_of_an_inactive_account_sends_no_write(target):
    target.add("ann@acme.com", active=False)
    d = await make(target)
    await d.apply(plan(1, PlanAction.DEACTIVATE))
    assert target.calls() == ["GET"]


async def test_upsert_after_deactivate_reactivates(target):
    d = await make(target)
    await d.apply(plan(1))
    await d.apply(plan(2, PlanAction.DEACTIVATE))
    await d.apply(plan(3))
    [user] = target.users.values()
    assert user["active"] is True
    assert target.calls().count("POST") == 1


async def test_create_users_off_skips_without_posting(target):
    d = await make(target, actions={"create_users": False})
    outcome = await d.apply(plan())
    assert outcome.step is AuditStep.SKIPPED
    assert "POST" not in target.calls() and target.users == {}


async def test_create_users_off_still_updates_an_existing_account(target):
    uid = target.add("ann@acme.com")
    d = await make(target, actions={"create_users": False})
    outcome = await d.apply(plan())
    assert outcome.step is AuditStep.APPLIED and target.calls() == ["GET", "PUT"]
    assert target.users[uid]["name"]["givenName"] == "Ann"


async def test_update_users_off_does_not_put_the_profile(target):
    uid = target.add("ann@acme.com")
    d = await make(target, actions={"update_users": False})
    outcome = await d.apply(plan())
    assert outcome.step is AuditStep.SKIPPED and target.calls() == ["GET"]
    assert "name" not in target.users[uid]


async def test_deactivate_users_off_sends_nothing(target):
    target.add("ann@acme.com")
    d = await make(target, actions={"deactivate_users": False})
    outcome = await d.apply(plan(1, PlanAction.DEACTIVATE))
    assert outcome.step is AuditStep.SKIPPED and target.requests == []


async def test_a_newer_plan_applied_meanwhile_makes_the_older_one_stale(target):
    d = await make(target)

    class Racing(FakeLinks):
        async def get(self, app_id, user_id):  # the check passes, then another dispatcher applies v5 first
            link = self.links.get((app_id, user_id))
            self.links[(app_id, user_id)] = Link(None, 5, True)
            return link

    d.links = Racing()
    outcome = await d.apply(plan(3))
    assert outcome.step is AuditStep.SKIPPED_STALE
    assert (await d.links.get(JIRA, "00u1")).applied_version == 5


# ------------------------------------------------------------------ against the in-process demo target, both dialects

DEPARTMENT = "urn:okta:jira:1.0:user:department"


@pytest.mark.parametrize("version", ["1.1", "2.0"])
async def test_lifecycle_against_the_demo_target(version):
    transport = httpx.ASGITransport(app=create_app(TargetConfig(token="t0k")))
    base = f"http://target/scim/v{version[0]}"
    app = app_connector(JIRA, "jira", base_url=base + "/")
    assert app.version == version
    async with httpx.AsyncClient(transport=transport) as http, TargetAdmin("http://target", transport=transport) as admin:
        client = ScimClient(http, base, app.version, headers={"Authorization": "Bearer t0k"})
        d = Applier(Dispatcher({JIRA: app}, {JIRA: client}), FakeLinks())
        await admin.seed_user({"userName": "bob@acme.com"})  # a create whose answer was lost
        assert (await d.apply(plan(1, user_name="ann@acme.com", **{DEPARTMENT: "Eng"}))).method == "POST"
        await d.apply(plan(1, user_name="bob@acme.com", user_id="00u2"))
        await d.apply(plan(2, user_name="ann@acme.com", **{DEPARTMENT: "Platform"}))
        await d.apply(plan(3, PlanAction.DEACTIVATE, user_name="ann@acme.com"))
        users = {u["userName"]: u for u in await admin.users()}
        assert set(users) == {"ann@acme.com", "bob@acme.com"}
        assert users["ann@acme.com"]["active"] is False
        assert users["ann@acme.com"]["urn:okta:jira:1.0:user"]["department"] == "Platform"
        assert users["bob@acme.com"]["externalId"] == "00u2"
        methods = [e["method"] for e in await admin.requests()]
        assert "DELETE" not in methods and methods.count("POST") == 1


async def test_a_target_id_equal_to_the_user_name_never_reaches_a_span(target):
    """Some targets use the userName (an email) as the resource id: no span attribute may carry it."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    target._ids = iter(["ann@acme.com"])
    d = await make(target)
    outcome = await d.apply(plan())
    assert outcome.target_id == "ann@acme.com"  # the target's id is the userName
    spans = exporter.get_finished_spans()
    assert any(s.name.startswith("apply") for s in spans), [s.name for s in spans]
    for span in spans:
        for name, value in (span.attributes or {}).items():
            assert "ann@acme.com" not in str(value), (span.name, name)
        assert "ann@acme.com" not in span.name
    exporter.clear()
