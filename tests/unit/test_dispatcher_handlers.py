"""Dispatcher with a fake link store and a real ScimClient over ``httpx.MockTransport``: no duplicates, no
regressions, never a DELETE (design-notes: applying to targets without duplicates or reordering)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from demo_scim_target.admin_client import TargetAdmin
from demo_scim_target.app import create_app
from demo_scim_target.common import TargetConfig
from okta_bridge.contracts import AuditStep, MappedAttribute, PlanAction, Reason, ScimOperationPlanned
from scim_dispatcher.adapters import ScimClient
from scim_dispatcher.handlers import Dispatcher
from scim_dispatcher.ports import Link
from tests.unit.fakes import ORG, FakeLinks, FakeScimTarget, app_connector
from tests.spans import sdk_provider

JIRA = "0oa1jiraxxxxxxxxxxxx"
BASE = "https://jira.lan/scim/v2"


def plan(version: int = 1, action: PlanAction = PlanAction.UPSERT, user_name: str = "ann@acme.com",
         user_id: str = "00u1xxxxxxxxxxxxxxxx", **extra: Any) -> ScimOperationPlanned:
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
    links = FakeLinks()
    return Applier(Dispatcher({JIRA: app}, {JIRA: client}, links), links)


async def test_create_posts_after_a_lookup_that_finds_nothing(target):
    d = await make(target)
    outcome = await d.apply(plan())
    assert target.calls() == ["GET", "POST"]
    assert target.requests[0][1] == "/Users"
    assert outcome.step is AuditStep.APPLIED and outcome.method == "POST"
    [created] = target.users.values()
    assert created["userName"] == "ann@acme.com" and created["active"] is True
    assert created["name"] == {"givenName": "Ann", "familyName": "Example"}
    link = await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")
    assert link == Link(created["id"], 1, True) and link.user_name == "ann@acme.com"


async def test_a_create_sends_a_random_password_as_oktas_client_does(target):
    d = await make(target)
    await d.apply(plan())
    await d.apply(plan(user_name="bob@acme.com", user_id="00u2xxxxxxxxxxxxxxxx"))
    passwords = [u["password"] for u in target.users.values()]
    assert all(isinstance(p, str) and len(p) >= 16 for p in passwords) and len(set(passwords)) == 2


@pytest.mark.parametrize("setting", [{"password_on_create": "none"}, {"actions": {"sync_password": False}}])
async def test_password_on_create_none_sends_no_password(target, setting):
    d = await make(target, **setting)
    await d.apply(plan())
    [created] = target.users.values()
    assert "password" not in created


async def test_an_update_keeps_what_the_target_holds_beside_the_mapped_attributes(target):
    """A target that treats PUT as a full replace (RFC 7644 §3.5.1) loses nothing the bridge does not manage; a
    mapped attribute Okta has no value for any more is cleared; the password the target echoed is not sent back."""
    d = await make(target)
    await d.apply(plan(1, displayName="Ann E"))
    uid = next(iter(target.users))
    target.users[uid].update(phoneNumbers=[{"value": "+1 555 0100"}], roles=[{"value": "admin"}],
                             **{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"costCenter": "9"}})
    await d.apply(plan(2, **{"name.givenName": "Anna"}))  # no displayName in Okta any more
    put = target.bodies[-1]
    assert put["name"]["givenName"] == "Anna" and "displayName" not in put and "password" not in put
    assert put["phoneNumbers"] == [{"value": "+1 555 0100"}] and put["roles"] == [{"value": "admin"}]
    assert put["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] == {"costCenter": "9"}


async def test_an_account_found_by_lookup_is_linked_and_put_never_posted(target):
    """A create whose answer was lost: the target already has the account, so it is not created twice."""
    existing = target.add("ann@acme.com")
    d = await make(target)
    outcome = await d.apply(plan())
    assert target.calls() == ["GET", "GET", "PUT"]  # search, then the account read by id
    assert target.requests[1][1] == f"/Users/{existing}"
    assert outcome.target_id == existing and "linked existing" in outcome.detail
    assert (await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).target_id == existing
    assert len(target.users) == 1


async def test_a_linked_account_is_read_by_id_then_put(target):
    d = await make(target)
    await d.apply(plan(1))
    uid = next(iter(target.users))
    target.requests.clear()
    await d.apply(plan(2, **{"name.givenName": "Anna"}))
    assert target.requests == [("GET", f"/Users/{uid}"), ("PUT", f"/Users/{uid}")]
    assert target.users[uid]["name"]["givenName"] == "Anna"
    assert (await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).applied_version == 2


@pytest.mark.parametrize("stale_version", [1, 2])
async def test_a_stale_plan_is_skipped_without_any_http_call(target, stale_version):
    d = await make(target)
    await d.apply(plan(2))
    target.requests.clear()
    outcome = await d.apply(plan(stale_version, **{"name.givenName": "Old"}))
    assert outcome.step is AuditStep.SKIPPED_STALE
    assert target.requests == []
    assert (await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).applied_version == 2


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
    assert (await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).target_id == new


async def test_a_linked_account_gone_but_recreated_by_someone_is_relinked(target):
    d = await make(target)
    await d.apply(plan(1))
    old = next(iter(target.users))
    del target.users[old]
    other = target.add("ann@acme.com")
    target.requests.clear()
    await d.apply(plan(2))
    assert target.calls() == ["GET", "GET", "GET", "PUT"]
    assert (await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).target_id == other


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
    assert target.calls() == ["GET", "POST", "GET", "GET", "PUT"]
    [uid] = target.users
    assert outcome.step is AuditStep.APPLIED and outcome.target_id == uid
    assert (await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).target_id == uid


async def test_deactivate_sets_active_false_and_never_deletes(target):
    d = await make(target)
    await d.apply(plan(1))
    uid = next(iter(target.users))
    outcome = await d.apply(plan(2, PlanAction.DEACTIVATE))
    assert target.users[uid]["active"] is False
    assert "DELETE" not in target.calls()
    assert outcome.step is AuditStep.APPLIED and outcome.method == "PUT"
    assert await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx") == Link(uid, 2, False)


async def test_deactivate_with_patch(target):
    d = await make(target, deactivate_with="PATCH")
    uid = target.add("ann@acme.com")
    await d.apply(plan(1, PlanAction.DEACTIVATE))
    assert target.calls() == ["GET", "GET", "PATCH"]
    assert target.users[uid]["active"] is False


async def test_deactivate_of_an_unlinked_account_finds_it_by_lookup(target):
    uid = target.add("ann@acme.com")
    d = await make(target)
    await d.apply(plan(1, PlanAction.DEACTIVATE))
    assert target.users[uid]["active"] is False
    assert (await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).target_id == uid


async def test_deactivate_without_an_account_creates_nothing(target):
    d = await make(target)
    outcome = await d.apply(plan(1, PlanAction.DEACTIVATE))
    assert target.calls() == ["GET"]
    assert target.users == {} and outcome.step is AuditStep.APPLIED


async def test_deactivate_of_an_inactive_account_sends_no_write(target):
    target.add("ann@acme.com", active=False)
    d = await make(target)
    await d.apply(plan(1, PlanAction.DEACTIVATE))
    assert target.calls() == ["GET", "GET"]


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
    assert outcome.step is AuditStep.APPLIED and target.calls() == ["GET", "GET", "PUT"]
    assert target.users[uid]["name"]["givenName"] == "Ann"


async def test_update_users_off_does_not_put_the_profile(target):
    uid = target.add("ann@acme.com")
    d = await make(target, actions={"update_users": False})
    outcome = await d.apply(plan())
    assert outcome.step is AuditStep.SKIPPED and target.calls() == ["GET", "GET"]
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
    assert (await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).applied_version == 5


# ------------------------------------------------------------------ against the in-process demo target, both dialects

DEPARTMENT = "urn:okta:jira:1.0:user:department"


@pytest.mark.parametrize("version", ["1.1", "2.0"])
async def test_lifecycle_against_the_demo_target(version):
    transport = httpx.ASGITransport(app=create_app(TargetConfig(token="t0k")))
    base = f"https://target/scim/v{version[0]}"
    app = app_connector(JIRA, "jira", base_url=base + "/", allow_insecure_http=True)  # in-process ASGI
    assert app.version == version
    async with httpx.AsyncClient(transport=transport) as http, TargetAdmin("http://target", transport=transport) as admin:
        client = ScimClient(http, base, app.version, headers={"Authorization": "Bearer t0k"})
        d = Applier(Dispatcher({JIRA: app}, {JIRA: client}), FakeLinks())
        await admin.seed_user({"userName": "bob@acme.com"})  # a create whose answer was lost
        assert (await d.apply(plan(1, user_name="ann@acme.com", **{DEPARTMENT: "Eng"}))).method == "POST"
        await d.apply(plan(1, user_name="bob@acme.com", user_id="00u2xxxxxxxxxxxxxxxx"))
        await d.apply(plan(2, user_name="ann@acme.com", **{DEPARTMENT: "Platform"}))
        await d.apply(plan(3, PlanAction.DEACTIVATE, user_name="ann@acme.com"))
        users = {u["userName"]: u for u in await admin.users()}
        assert set(users) == {"ann@acme.com", "bob@acme.com"}
        assert users["ann@acme.com"]["active"] is False
        assert users["ann@acme.com"]["urn:okta:jira:1.0:user"]["department"] == "Platform"
        assert users["bob@acme.com"]["externalId"] == "00u2xxxxxxxxxxxxxxxx"
        assert len(users["ann@acme.com"]["_password"]) >= 16  # created with a random password, in 1.1 and 2.0
        assert "_password" not in users["bob@acme.com"]  # linked, never created: no password set
        methods = [e["method"] for e in await admin.requests()]
        assert "DELETE" not in methods and methods.count("POST") == 1


# ------------------------------------------------------------------ adoption of existing accounts (issue 9, item 4)


async def test_an_existing_account_of_another_okta_user_by_external_id_is_held_not_overwritten(target):
    existing = target.add("ann@acme.com", externalId="00u2otherxxxxxxxxxxx", title="kept")
    d = await make(target)
    outcome = await d.apply(plan())
    assert outcome.step is AuditStep.HELD and outcome.reason is Reason.ADOPTION_HELD
    assert outcome.target_id == existing and "externalId" in outcome.detail
    assert outcome.link is None and await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx") is None
    assert target.calls() == ["GET"]  # the lookup only: no PUT, no POST
    assert target.users[existing]["externalId"] == "00u2otherxxxxxxxxxxx" and target.users[existing]["title"] == "kept"


async def test_an_existing_account_another_link_holds_is_held(target):
    d = await make(target)
    await d.apply(plan(user_id="00u2xxxxxxxxxxxxxxxx"))  # 00u2 created and linked the account
    [(held_id, account)] = target.users.items()
    account.pop("externalId", None)  # nothing on the account itself says whose it is: only the link does
    target.requests.clear()
    outcome = await d.apply(plan(user_id="00u1xxxxxxxxxxxxxxxx"))  # another Okta user with the same app username
    assert outcome.reason is Reason.ADOPTION_HELD and outcome.target_id == held_id and "00u2xxxxxxxxxxxxxxxx" in outcome.detail
    assert target.calls() == ["GET"]
    assert (await d.links.get(JIRA, "00u2xxxxxxxxxxxxxxxx")).target_id == held_id and await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx") is None


async def test_a_deactivation_never_reaches_another_users_account_found_by_lookup(target):
    existing = target.add("ann@acme.com", externalId="00u2otherxxxxxxxxxxx")
    d = await make(target)
    outcome = await d.apply(plan(action=PlanAction.DEACTIVATE))
    assert outcome.reason is Reason.ADOPTION_HELD
    assert target.users[existing]["active"] is True and target.calls() == ["GET"]


async def test_409_on_post_never_links_another_users_account(target):
    target.conflict_on_post = True

    def racing(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            target.add("ann@acme.com", externalId="00u2otherxxxxxxxxxxx")
        return target(request)

    app = app_connector(JIRA, "jira", base_url=BASE + "/")
    client = ScimClient(httpx.AsyncClient(transport=httpx.MockTransport(racing)), BASE, "2.0")
    links = FakeLinks()
    outcome = await Applier(Dispatcher({JIRA: app}, {JIRA: client}, links), links).apply(plan())
    assert outcome.reason is Reason.ADOPTION_HELD and target.calls() == ["GET", "POST", "GET"]


@pytest.mark.parametrize("external_id", [None, "", "00u1xxxxxxxxxxxxxxxx"])
async def test_an_account_without_an_external_id_or_with_ours_is_adopted(target, external_id):
    extra = {} if external_id is None else {"externalId": external_id}
    existing = target.add("ann@acme.com", **extra)
    d = await make(target)
    outcome = await d.apply(plan())
    assert outcome.step is AuditStep.APPLIED and outcome.target_id == existing
    assert (await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).target_id == existing


async def test_an_app_that_does_not_map_external_id_is_not_judged_by_it(target):
    existing = target.add("ann@acme.com", externalId="app-own-id-7")
    d = await make(target, attribute_mappings={"externalId": None})
    p = plan()
    p = p.model_copy(update={"attributes": tuple(a for a in p.attributes if a.path != "externalId")})
    outcome = await d.apply(p)
    assert outcome.step is AuditStep.APPLIED and outcome.target_id == existing


async def test_a_held_adoption_is_tried_again_by_the_next_plan_once_fixed(target):
    existing = target.add("ann@acme.com", externalId="00u2otherxxxxxxxxxxx")
    d = await make(target)
    assert (await d.apply(plan(1))).reason is Reason.ADOPTION_HELD
    del target.users[existing]["externalId"]  # a person decided: the account is Ann's
    outcome = await d.apply(plan(2))
    assert outcome.step is AuditStep.APPLIED and (await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).target_id == existing


ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


class ChangedOnTheTarget(httpx.AsyncBaseTransport):
    """The demo target, where someone changes the user on the target (an admin, another tool) between the bridge's
    read and its first PUT: the case If-Match exists for."""

    def __init__(self, inner: httpx.AsyncBaseTransport, change: dict[str, Any]) -> None:
        self.inner, self.change, self.changed = inner, change, False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and not self.changed:
            self.changed = True
            patch = httpx.Request("PATCH", request.url, headers={"Authorization": "Bearer t0k"},
                                  json=self.change)
            answer = await self.inner.handle_async_request(patch)
            await answer.aread()
            assert answer.status_code == 200, answer.content
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("version", ["1.1", "2.0"])
async def test_an_update_against_the_demo_target_keeps_unmanaged_attributes_and_a_concurrent_change(version):
    """The demo target treats PUT as a full replace. Phone numbers, roles and an extension attribute set directly
    on the target survive a bridge update; a change made on the target between the bridge's GET and PUT is not
    overwritten: the PUT carries If-Match, the target answers 412, the bridge reads again and re-applies."""
    app_under_test = create_app(TargetConfig(token="t0k"))
    base = f"http://target/scim/v{version[0]}"
    if version == "1.1":
        change = {"schemas": ["urn:scim:schemas:core:1.0"], "title": "Changed on the target"}
    else:
        change = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                  "Operations": [{"op": "replace", "path": "title", "value": "Changed on the target"}]}
    transport = ChangedOnTheTarget(httpx.ASGITransport(app=app_under_test), change)
    transport.changed = True  # the create goes through untouched
    app = app_connector(JIRA, "jira", base_url=base + "/", allow_insecure_http=True)  # in-process ASGI
    async with httpx.AsyncClient(transport=transport) as http, \
            TargetAdmin("http://target", transport=httpx.ASGITransport(app=app_under_test)) as admin:
        client = ScimClient(http, base, app.version, headers={"Authorization": "Bearer t0k"})
        d = Applier(Dispatcher({JIRA: app}, {JIRA: client}), FakeLinks())
        assert (await d.apply(plan(1, **{DEPARTMENT: "Eng"}))).method == "POST"
        uid = (await d.links.get(JIRA, "00u1xxxxxxxxxxxxxxxx")).target_id
        direct = {"phoneNumbers": [{"value": "+47 555 0100", "type": "work"}], "roles": [{"value": "admin"}],
                  ENTERPRISE: {"costCenter": "CC-9"}}
        put = httpx.Request("PATCH", f"{base}/Users/{uid}", headers={"Authorization": "Bearer t0k"},
                            json={"schemas": ["urn:scim:schemas:core:1.0"], **direct} if version == "1.1" else {
                                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                "Operations": [{"op": "add", "value": direct}]})
        assert (await http.send(put)).status_code == 200
        transport.changed = False  # from now on: someone changes the title before the bridge's next PUT lands
        outcome = await d.apply(plan(2, **{"name.givenName": "Anna", DEPARTMENT: "Platform"}))
        assert outcome.step is AuditStep.APPLIED
        [stored] = await admin.users()
        assert stored["name"]["givenName"] == "Anna"  # the bridge's change landed
        assert stored["urn:okta:jira:1.0:user"] == {"department": "Platform"}
        assert stored["title"] == "Changed on the target"  # the concurrent change was not overwritten
        assert stored["phoneNumbers"] == direct["phoneNumbers"] and stored["roles"] == direct["roles"]
        assert stored[ENTERPRISE] == {"costCenter": "CC-9"}
        writes = [(e["method"], e["status"]) for e in await admin.requests() if e["method"] in ("PUT", "GET")][-4:]
        assert writes == [("GET", 200), ("PUT", 412), ("GET", 200), ("PUT", 200)]


async def test_a_target_id_equal_to_the_user_name_never_reaches_a_span(target):
    """Some targets use the userName (an email) as the resource id: no span attribute may carry it."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = sdk_provider()
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


async def test_a_target_error_echoing_the_persons_names_reaches_no_span_and_no_error_text():
    """A target that quotes the plan's values back in its error (names, department, the email's local part): the
    error text and every exported span carry them masked, as whole words (issue 9, item 15)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from okta_bridge.telemetry import MaskingSpanExporter
    from scim_dispatcher.adapters import ScimError

    provider = sdk_provider()
    exported = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(MaskingSpanExporter(exported)))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"Resources": [], "totalResults": 0})
        return httpx.Response(400, json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "400",
                                         "detail": "givenName Ann familyName Example (dept Platform) rejected for "
                                                   "user ann: announce later"})

    app = app_connector(JIRA, "jira", base_url=BASE + "/")
    client = ScimClient(httpx.AsyncClient(transport=httpx.MockTransport(answer)), BASE, app.version,
                        unique_field=app.unique_user_field)
    d = Dispatcher({JIRA: app}, {JIRA: client}, FakeLinks())
    with pytest.raises(ScimError) as caught:
        await d.apply(plan(**{"urn:okta:jira:1.0:user:department": "Platform"}), None)
    text = str(caught.value)
    assert "announce later" in text  # whole words only: the rest of the text stays readable
    spans = [s for s in exported.get_finished_spans() if s.name.startswith("apply")]
    assert spans, [s.name for s in exported.get_finished_spans()]
    exported_text = " ".join([text] + [f"{s.status.description} {[dict(e.attributes) for e in s.events]}"
                                       for s in exported.get_finished_spans()])
    for value in ("Ann", "Example", "Platform", "ann:"):
        assert value not in exported_text, value
    exported.clear()


async def test_an_adopted_account_is_read_by_id_before_its_put():
    """A search answer may leave attributes out and carries no ETag: the PUT is built from the account read by id,
    so what the bridge does not manage survives and If-Match carries the account's version."""
    import json as _json

    full = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "t-9", "userName": "ann@acme.com",
            "active": True, "phoneNumbers": [{"value": "+47 555 0100", "type": "work"}],
            "meta": {"resourceType": "User", "version": 'W/"7"'}}
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.method == "GET" and "filter" in str(request.url):
            return httpx.Response(200, json={"totalResults": 1, "Resources": [
                {"id": "t-9", "userName": "ann@acme.com", "active": True}]})  # trimmed, as some servers answer
        if request.method == "GET":
            return httpx.Response(200, json=full, headers={"ETag": 'W/"7"'})
        return httpx.Response(200, json={**_json.loads(request.content), "id": "t-9"})

    app = app_connector(JIRA, "jira", base_url=BASE + "/")
    client = ScimClient(httpx.AsyncClient(transport=httpx.MockTransport(answer)), BASE, app.version,
                        unique_field=app.unique_user_field)
    outcome = await Dispatcher({JIRA: app}, {JIRA: client}, FakeLinks()).apply(plan(), None)
    assert outcome.step is AuditStep.APPLIED and outcome.target_id == "t-9"
    put = sent[-1]
    assert [r.method for r in sent] == ["GET", "GET", "PUT"] and put.headers["If-Match"] == 'W/"7"'
    assert _json.loads(put.content)["phoneNumbers"] == full["phoneNumbers"]
