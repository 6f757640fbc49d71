"""Tenants of the demo SCIM target: `/t/{tenant}/scim/v1|v2/…` with a store each, the default tenant on the
un-prefixed paths, `?tenant=` on the admin API, fault rules on full paths."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from demo_scim_target.admin_client import TargetAdmin
from demo_scim_target.app import create_app
from demo_scim_target.common import TargetConfig

TOKEN = "demo-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CORE11 = "urn:scim:schemas:core:1.0"
USER20 = "urn:ietf:params:scim:schemas:core:2.0:User"


def make_client(*quirks: str) -> TestClient:
    return TestClient(create_app(TargetConfig(token=TOKEN, quirks=frozenset(quirks))))


@pytest.fixture
def client() -> TestClient:
    return make_client()


def post_user(client, base: str, user_name: str, status: int = 201) -> dict:
    r = client.post(f"{base}/Users", json={"schemas": [USER20], "userName": user_name}, headers=AUTH)
    assert r.status_code == status, r.text
    return r.json()


def total(client, base: str, flt: str | None = None) -> int:
    params = {"filter": flt} if flt else {}
    r = client.get(f"{base}/Users", params=params, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()["totalResults"]


def test_each_tenant_has_its_own_store(client):
    ann = post_user(client, "/t/acme/scim/v2", "ann@example.com")
    assert ann["meta"]["location"] == f"http://testserver/t/acme/scim/v2/Users/{ann['id']}"
    post_user(client, "/t/acme/scim/v2", "ANN@example.com", 409)  # unique within the tenant
    post_user(client, "/t/globex/scim/v2", "ann@example.com")  # ... not across tenants
    post_user(client, "/scim/v2", "ann@example.com")
    assert [total(client, b) for b in ("/scim/v2", "/t/acme/scim/v2", "/t/globex/scim/v2")] == [1, 1, 1]
    assert client.get(f"/t/acme/scim/v2/Users/{ann['id']}", headers=AUTH).status_code == 200
    assert client.get(f"/t/globex/scim/v2/Users/{ann['id']}", headers=AUTH).status_code == 404
    assert client.get(f"/scim/v2/Users/{ann['id']}", headers=AUTH).status_code == 404
    assert total(client, "/t/acme/scim/v2", 'userName eq "ann@example.com"') == 1
    assert total(client, "/t/new-one/scim/v2") == 0  # created on first use


def test_both_dialects_share_a_tenants_store(client):
    r = client.post("/t/acme/scim/v1/Users", json={"schemas": [CORE11], "userName": "bob@example.com"},
                    headers=AUTH)
    assert r.status_code == 201 and r.headers["content-type"].startswith("application/json")
    assert r.json()["schemas"] == [CORE11]
    assert r.headers["location"] == f"http://testserver/t/acme/scim/v1/Users/{r.json()['id']}"
    got = client.get(f"/t/acme/scim/v2/Users/{r.json()['id']}", headers=AUTH)
    assert got.headers["content-type"].startswith("application/scim+json") and got.json()["schemas"] == [USER20]
    unauthorized = client.get("/t/acme/scim/v1/Users")
    assert unauthorized.status_code == 401 and list(unauthorized.json()) == ["Errors"]  # 1.1 error body
    assert client.get("/t/acme/scim/v2/Users").json()["status"] == "401"
    spc = client.get("/t/acme/scim/v2/ServiceProviderConfig", headers=AUTH).json()
    assert spc["meta"]["location"] == "http://testserver/t/acme/scim/v2/ServiceProviderConfig"
    assert client.get("/t/acme/scim/v1/ServiceProviderConfigs", headers=AUTH).status_code == 200


def test_groups_and_members_stay_in_their_tenant(client):
    ann = post_user(client, "/t/acme/scim/v2", "ann@example.com")
    group = {"displayName": "eng", "members": [{"value": ann["id"]}]}
    assert client.post("/t/globex/scim/v2/Groups", json=group, headers=AUTH).status_code == 400
    created = client.post("/t/acme/scim/v2/Groups", json=group, headers=AUTH)
    assert created.status_code == 201
    user = client.get(f"/t/acme/scim/v2/Users/{ann['id']}", headers=AUTH).json()
    assert user["groups"][0]["$ref"] == f"http://testserver/t/acme/scim/v2/Groups/{created.json()['id']}"
    assert client.post("/scim/v2/Groups", json={"displayName": "eng"}, headers=AUTH).status_code == 201


def test_default_tenant_is_also_under_t_default(client):
    post_user(client, "/scim/v2", "ann@example.com")
    assert total(client, "/t/default/scim/v2") == 1


@pytest.mark.parametrize("path, status", [
    ("/t/bad.name/scim/v2/Users", 404), ("/t/a_b-C9/scim/v2/Users", 200), ("/t//scim/v2/Users", 404),
    ("/t/acme/scim/v3/Users", 404), ("/t/acme/scim/v2x/Users", 404),
])
def test_tenant_names(client, path, status):
    assert client.get(path, headers=AUTH).status_code == status


def test_quirks_apply_in_every_tenant():
    client = make_client("id-equals-username", "no-unique-username")
    assert post_user(client, "/t/acme/scim/v2", "q@example.com")["id"] == "q@example.com"
    client = make_client("no-unique-username")
    post_user(client, "/t/acme/scim/v2", "twice@example.com")
    post_user(client, "/t/acme/scim/v2", "twice@example.com")
    assert total(client, "/t/acme/scim/v2", 'userName eq "twice@example.com"') == 2


def test_request_log_names_the_tenant(client):
    post_user(client, "/t/acme/scim/v2", "ann@example.com")
    client.get("/scim/v1/Users", headers=AUTH)
    client.get("/t/bad.name/scim/v2/Users", headers=AUTH)
    log = client.get("/_admin/requests").json()["requests"]
    assert [(e["path"], e["tenant"]) for e in log] == [
        ("/t/acme/scim/v2/Users", "acme"), ("/scim/v1/Users", "default"), ("/t/bad.name/scim/v2/Users", "default")]


def test_fault_rules_match_the_full_path(client):
    client.post("/_admin/faults", json={"status": 503, "path_regex": "^/t/acme/"})
    assert client.get("/t/acme/scim/v2/Users", headers=AUTH).status_code == 503
    assert client.get("/t/globex/scim/v2/Users", headers=AUTH).status_code == 200
    assert client.get("/scim/v2/Users", headers=AUTH).status_code == 200
    v1 = client.get("/t/acme/scim/v1/Users", headers=AUTH)
    assert v1.status_code == 503 and list(v1.json()) == ["Errors"]  # the fault speaks the path's dialect


def test_admin_tenant_parameter(client):
    assert client.post("/_admin/users?tenant=acme", json={"userName": "seeded@example.com"}).status_code == 201
    client.post("/_admin/groups?tenant=acme", json={"displayName": "seeded"})
    post_user(client, "/scim/v2", "default@example.com")
    assert [u["userName"] for u in client.get("/_admin/users", params={"tenant": "acme"}).json()] == \
        ["seeded@example.com"]
    assert [u["userName"] for u in client.get("/_admin/users").json()] == ["default@example.com"]
    assert [g["displayName"] for g in client.get("/_admin/groups?tenant=acme").json()] == ["seeded"]
    assert client.get("/_admin/groups").json() == []
    assert total(client, "/t/acme/scim/v2", 'userName eq "seeded@example.com"') == 1
    for bad in ("a.b", "*", ""):
        assert client.get("/_admin/users", params={"tenant": bad}).status_code == 400


def test_reset_per_tenant_default_and_all(client):
    post_user(client, "/t/acme/scim/v2", "a@example.com")
    post_user(client, "/t/globex/scim/v2", "g@example.com")
    post_user(client, "/scim/v2", "d@example.com")
    client.post("/_admin/faults", json={"status": 500, "path_regex": "/nowhere"})
    assert client.post("/_admin/reset?tenant=acme").status_code == 204  # that tenant's store only
    assert client.get("/_admin/users?tenant=acme").json() == []
    assert len(client.get("/_admin/users").json()) == 1 and len(client.get("/_admin/faults").json()) == 1
    assert len(client.get("/_admin/requests").json()["requests"]) == 3
    client.post("/_admin/reset")  # as before tenants: the default store, the log, the faults
    assert client.get("/_admin/users").json() == [] and client.get("/_admin/faults").json() == []
    assert client.get("/_admin/requests").json()["requests"] == []
    assert len(client.get("/_admin/users?tenant=globex").json()) == 1
    post_user(client, "/scim/v2", "d@example.com")
    client.post("/_admin/reset", params={"tenant": "*"})
    assert all(client.get("/_admin/users", params={"tenant": t}).json() == [] for t in ("acme", "globex", "default"))


async def test_admin_client_takes_a_tenant():
    app = create_app(TargetConfig(token=TOKEN))
    async with TargetAdmin("http://target", transport=httpx.ASGITransport(app=app)) as admin:
        await admin.seed_user({"userName": "t@example.com"}, tenant="acme")
        await admin.seed_group({"displayName": "g"}, tenant="acme")
        await admin.seed_user({"userName": "d@example.com"})
        assert [u["userName"] for u in await admin.users(tenant="acme")] == ["t@example.com"]
        assert [u["userName"] for u in await admin.users()] == ["d@example.com"]
        assert [g["displayName"] for g in await admin.groups("acme")] == ["g"] and await admin.groups() == []
        await admin.reset(tenant="acme")
        assert await admin.users("acme") == [] and len(await admin.users()) == 1
        await admin.seed_user({"userName": "t@example.com"}, tenant="acme")
        await admin.reset("*")
        assert await admin.users("acme") == [] and await admin.users() == []
