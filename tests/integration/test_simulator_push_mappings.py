"""Okta's group push mappings in the simulator, run as a real process: every request we send and every answer it
gives is checked against Okta's official spec (paths `/api/v1/apps/{appId}/group-push/mappings[/{mappingId}]`),
and the System Log events it writes are checked by type and target."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from okta_simulator import SimulatorAdmin, start_simulator

pytestmark = pytest.mark.integration
SPEC = Path(__file__).parents[1] / "fixtures" / "openapi" / "okta-management-openapi-2026.06.3.yaml"
SERVER = "https://subdomain.okta.com"
TOKEN, TOKEN_ID = "push-token", "00Tpushmappings00001"
AUTH = {"Authorization": f"SSWS {TOKEN}"}
PUSH = "application.provision.group_push."


@pytest.fixture(scope="module")
def simulator():
    with start_simulator(plan="workforce", tokens=[f"{TOKEN}:{TOKEN_ID}"]) as running:
        yield running


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC), config=Config(spec_validator_cls=None))


@pytest.fixture
async def admin(simulator):
    async with SimulatorAdmin(simulator.base_url) as client:
        await client.reset()
        yield client


@pytest.fixture
async def okta(simulator):
    async with httpx.AsyncClient(base_url=simulator.base_url, headers=AUTH) as client:
        yield client


@pytest.fixture
async def org(admin) -> dict:
    """An app Okta provisions, an SSO-only app, and two Okta groups."""
    return {"app": await admin.create_app("Provisioned", provisioning=True),
            "sso": await admin.create_app("SSO only"),
            "eng": await admin.create_group("Engineering"), "ops": await admin.create_group("Operations")}


class Api:
    """Sends one request, validates it and its answer against the spec, returns the answer."""

    def __init__(self, okta: httpx.AsyncClient, spec: OpenAPI) -> None:
        self.okta, self.spec = okta, spec

    async def __call__(self, method: str, path: str, body: dict | None = None,
                       params: dict[str, str] | None = None) -> httpx.Response:
        data = json.dumps(body).encode() if body is not None else None
        request = MockRequest(SERVER, method.lower(), path, args=params or {}, headers=AUTH, data=data)
        self.spec.validate_request(request)
        response = await self.okta.request(method, path, params=params, json=body)
        content_type = response.headers.get("content-type", "application/json")
        self.spec.validate_response(request, MockResponse(response.content, response.status_code,
                                                          content_type=content_type))
        return response


@pytest.fixture
def api(okta, spec) -> Api:
    return Api(okta, spec)


def mappings(app: str, mapping_id: str | None = None) -> str:
    return f"/api/v1/apps/{app}/group-push/mappings" + (f"/{mapping_id}" if mapping_id else "")


async def create(api: Api, app: str, body: dict) -> dict:
    r = await api("POST", mappings(app), body)
    assert r.status_code == 201, r.text
    return r.json()


async def push_events(admin: SimulatorAdmin) -> list[dict]:
    return [e for e in await admin.events() if e["eventType"].startswith(PUSH)]


def short(events: list[dict]) -> list[str]:
    return [e["eventType"].removeprefix(PUSH) for e in events]


async def test_lifecycle_create_get_list_deactivate_activate_delete(api, org):
    app, eng = org["app"], org["eng"]
    made = await create(api, app, {"sourceGroupId": eng, "targetGroupName": "Engineering"})
    assert made["id"].startswith("gPm") and made["targetGroupId"].startswith("00g")
    assert (made["sourceGroupId"], made["status"], made["errorSummary"]) == (eng, "ACTIVE", "")
    assert "lastPush" in made and made["_links"]["sourceGroup"]["href"].endswith(f"/api/v1/groups/{eng}")

    got = await api("GET", mappings(app, made["id"]))
    assert got.status_code == 200 and got.json() == made
    listed = await api("GET", mappings(app))
    assert [m["id"] for m in listed.json()] == [made["id"]]

    off = await api("PATCH", mappings(app, made["id"]), {"status": "INACTIVE"})
    assert off.status_code == 200 and off.json()["status"] == "INACTIVE"
    assert (await api("GET", mappings(app), params={"status": "ACTIVE"})).json() == []
    on = await api("PATCH", mappings(app, made["id"]), {"status": "ACTIVE"})
    assert on.json()["status"] == "ACTIVE" and on.json()["lastPush"] >= made["lastPush"]

    refused = await api("DELETE", mappings(app, made["id"]), params={"deleteTargetGroup": "false"})
    assert refused.status_code == 403 and refused.json()["errorCode"] == "E0000006"  # only INACTIVE ones go
    await api("PATCH", mappings(app, made["id"]), {"status": "INACTIVE"})
    gone = await api("DELETE", mappings(app, made["id"]), params={"deleteTargetGroup": "false"})
    assert gone.status_code == 204 and gone.content == b""
    missing = await api("GET", mappings(app, made["id"]))
    assert missing.status_code == 404 and missing.json()["errorCode"] == "E0000007"
    assert (await api("GET", mappings(app))).json() == []


async def test_events_name_app_source_group_and_mapping(api, admin, okta, spec, org):
    app, eng = org["app"], org["eng"]
    made = await create(api, app, {"sourceGroupId": eng, "targetGroupName": "eng", "status": "INACTIVE"})
    assert "lastPush" not in made  # never pushed while INACTIVE
    await api("PATCH", mappings(app, made["id"]), {"status": "ACTIVE"})
    await api("PATCH", mappings(app, made["id"]), {"status": "ACTIVE"})  # no change, no event
    await api("PATCH", mappings(app, made["id"]), {"status": "INACTIVE"})
    await api("DELETE", mappings(app, made["id"]), params={"deleteTargetGroup": "true"})

    log = await api("GET", "/api/v1/logs", params={"filter": f'target.id eq "{made["id"]}"'})
    events = log.json()
    assert short(events) == ["mapping.created", "activate_mapping", "pushed", "deactivate_mapping", "removed"]
    for event in events:
        assert [(t["type"], t["id"]) for t in event["target"]] == [
            ("AppInstance", app), ("UserGroup", eng), ("GroupPushMapping", made["id"])]
        assert event["transaction"]["detail"]["requestApiTokenId"] == TOKEN_ID
        assert event["debugContext"]["debugData"]["requestUri"] == mappings(app, made["id"])


@pytest.mark.parametrize("method, mapping_id, body, params", [
    ("GET", None, None, None),
    ("POST", None, {"sourceGroupId": "{eng}", "targetGroupName": "x"}, None),
    ("GET", "gPm00000000000000000", None, None),
    ("PATCH", "gPm00000000000000000", {"status": "INACTIVE"}, None),
    ("DELETE", "gPm00000000000000000", None, {"deleteTargetGroup": "false"}),
])
async def test_app_without_okta_provisioning_answers_403(api, admin, org, method, mapping_id, body, params):
    before = await admin.events()
    body = {k: v.format(**org) for k, v in body.items()} if body else None
    r = await api(method, mappings(org["sso"], mapping_id), body, params)
    assert r.status_code == 403
    assert r.json()["errorCode"] == "E0000006" and r.json()["errorLink"] == "E0000006"
    assert await admin.events() == before


@pytest.mark.parametrize("body", [
    {"sourceGroupId": "{eng}"},                                                  # neither target field
    {"sourceGroupId": "00gnosuchgroup000000", "targetGroupName": "a"},
    {"sourceGroupId": "{eng}", "targetGroupId": "00gnotinthisapp00000"},
])
async def test_create_rejects_invalid_requests(api, admin, org, body):
    r = await api("POST", mappings(org["app"]), {k: v.format(**org) for k, v in body.items()})
    assert r.status_code == 400 and r.json()["errorCode"] == "E0000001"
    assert await push_events(admin) == []


async def test_one_mapping_per_source_group_and_per_target_group(api, org):
    app = org["app"]
    first = await create(api, app, {"sourceGroupId": org["eng"], "targetGroupName": "Engineering"})
    again = await api("POST", mappings(app), {"sourceGroupId": org["eng"], "targetGroupName": "Other"})
    assert again.status_code == 400
    taken = await api("POST", mappings(app), {"sourceGroupId": org["ops"], "targetGroupId": first["targetGroupId"]})
    assert taken.status_code == 400 and taken.json()["errorCode"] == "E0000001"


async def test_delete_target_group_decides_whether_it_can_be_linked_again(api, org):
    app, eng = org["app"], org["eng"]
    made = await create(api, app, {"sourceGroupId": eng, "targetGroupName": "Engineering", "status": "INACTIVE"})
    await api("DELETE", mappings(app, made["id"]), params={"deleteTargetGroup": "false"})
    both = {"sourceGroupId": eng, "targetGroupId": made["targetGroupId"], "targetGroupName": "Engineering"}
    assert (await api("POST", mappings(app), both)).status_code == 400  # one of the two, never both
    linked = await create(api, app, {"sourceGroupId": eng, "targetGroupId": made["targetGroupId"], "status": "INACTIVE"})
    assert linked["targetGroupId"] == made["targetGroupId"] and linked["id"] != made["id"]
    by_name = await create(api, app, {"sourceGroupId": org["ops"], "targetGroupName": "Ops", "status": "INACTIVE"})

    await api("DELETE", mappings(app, linked["id"]), params={"deleteTargetGroup": "true"})
    r = await api("POST", mappings(app), {"sourceGroupId": eng, "targetGroupId": made["targetGroupId"]})
    assert r.status_code == 400  # the group in the app went with the mapping
    assert [m["id"] for m in (await api("GET", mappings(app))).json()] == [by_name["id"]]


async def test_deleting_the_okta_group_removes_its_mappings(api, admin, org):
    app = org["app"]
    eng = await create(api, app, {"sourceGroupId": org["eng"], "targetGroupName": "Engineering"})
    ops = await create(api, app, {"sourceGroupId": org["ops"], "targetGroupName": "Operations"})
    await admin.delete_group(org["eng"])

    assert [m["id"] for m in (await api("GET", mappings(app))).json()] == [ops["id"]]
    assert (await api("GET", mappings(app, eng["id"]))).status_code == 404
    events = await admin.events()
    removed = [e for e in events if e["eventType"] == PUSH + "removed"]
    assert [e["target"][2]["id"] for e in removed] == [eng["id"]]
    assert events.index(removed[0]) < [e["eventType"] for e in events].index("group.lifecycle.delete")


async def test_renaming_the_source_group_pushes_through_active_mappings_only(api, admin, org):
    app = org["app"]
    await create(api, app, {"sourceGroupId": org["eng"], "targetGroupName": "Engineering"})
    await create(api, app, {"sourceGroupId": org["ops"], "targetGroupName": "Operations", "status": "INACTIVE"})
    await admin.update_group(org["eng"], name="Engineering 2")
    await admin.update_group(org["ops"], name="Operations 2")
    updated = [e for e in await admin.events() if e["eventType"] == PUSH + "updated"]
    assert [e["target"][1]["id"] for e in updated] == [org["eng"]]
    assert "transaction" in updated[0] and "requestApiTokenId" not in updated[0]["transaction"]["detail"]


async def test_list_filters_and_pages(api, admin, org):
    app = org["app"]
    extra = await admin.create_group("Extra")
    made = [await create(api, app, {"sourceGroupId": g, "targetGroupName": g, "status": s})
            for g, s in ((org["eng"], "ACTIVE"), (org["ops"], "INACTIVE"), (extra, "ACTIVE"))]
    first = await api("GET", mappings(app), params={"limit": "2"})
    assert [m["id"] for m in first.json()] == [made[0]["id"], made[1]["id"]]
    second = await api("GET", mappings(app), params={"limit": "2", "after": made[1]["id"]})
    assert first.links["next"]["url"].endswith(f"after={made[1]['id']}")
    assert [m["id"] for m in second.json()] == [made[2]["id"]] and "next" not in second.links
    by_source = await api("GET", mappings(app), params={"sourceGroupId": org["ops"]})
    assert [m["id"] for m in by_source.json()] == [made[1]["id"]]
    active = await api("GET", mappings(app), params={"status": "ACTIVE"})
    assert [m["id"] for m in active.json()] == [made[0]["id"], made[2]["id"]]
    future = await api("GET", mappings(app), params={"lastUpdated": "2999-01-01T00:00:00Z"})
    assert future.json() == []


async def test_push_mapping_calls_count_in_the_apps_bucket(api, admin, org):
    made = await create(api, org["app"], {"sourceGroupId": org["eng"], "targetGroupName": "Engineering"})
    r = await api("GET", mappings(org["app"], made["id"]))
    assert r.headers["x-rate-limit-limit"] == "50"  # workforce: 100 a minute for /api/v1/apps/*, half per token
    stats = await admin.stats()
    assert stats["calls"]["apps"][TOKEN_ID] == 2 and TOKEN_ID not in stats["calls"].get("app", {})
