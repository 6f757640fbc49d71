"""In-process tests of the demo SCIM target (SCIM 1.1 + 2.0, admin API, faults, quirks)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from demo_scim_target.admin_client import TargetAdmin
from demo_scim_target.app import create_app
from demo_scim_target.cli import parse_args
from demo_scim_target.common import TargetConfig
from demo_scim_target.filters import FilterError, compile_filter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "scim"
TOKEN = "demo-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
V1, V2 = "/scim/v1", "/scim/v2"
CORE11 = "urn:scim:schemas:core:1.0"
USER20 = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP20 = "urn:ietf:params:scim:schemas:core:2.0:Group"
ERROR20 = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCHOP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def make_client(*quirks: str) -> TestClient:
    return TestClient(create_app(TargetConfig(token=TOKEN, quirks=frozenset(quirks))))


@pytest.fixture
def client() -> TestClient:
    return make_client()


def new_user(client, prefix, user_name, **extra):
    schema = CORE11 if prefix == V1 else USER20
    body = {"schemas": [schema], "userName": user_name, "active": True, **extra}
    r = client.post(f"{prefix}/Users", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()


def find(client, prefix, flt, **params):
    r = client.get(f"{prefix}/Users", params={"filter": flt, **params}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


# --- auth -------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_auth_required_with_dialect_error_bodies(client, headers):
    r1 = client.get(f"{V1}/Users", headers=headers)
    assert r1.status_code == 401
    assert r1.headers["content-type"].startswith("application/json")
    assert r1.json() == {"Errors": [{"description": r1.json()["Errors"][0]["description"], "code": 401}]}
    r2 = client.get(f"{V2}/Users", headers=headers)
    assert r2.status_code == 401
    assert r2.headers["content-type"].startswith("application/scim+json")
    assert r2.json()["schemas"] == [ERROR20] and r2.json()["status"] == "401"


def test_plain_text_401_quirk():
    r = make_client("plain-text-401").get(f"{V2}/Users")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("text/plain") and r.text == "Unauthorized"


# --- users, SCIM 1.1 --------------------------------------------------------------------------

def test_v1_create_okta_user(client):
    r = client.post(f"{V1}/Users", json=fixture("okta_v1_create_user.json"), headers=AUTH)
    assert r.status_code == 201
    assert r.headers["content-type"].startswith("application/json")
    user = r.json()
    assert user["schemas"][0] == CORE11 and "urn:okta:jira:1.0:user:custom" in user["schemas"]
    assert len(user["id"]) == 32 and user["userName"] == "alice@example.com"
    assert user["name"] == {"givenName": "Alice", "familyName": "Smith"}
    assert user["urn:okta:jira:1.0:user:custom"] == {"department": "Engineering", "isAdmin": False}
    assert user["externalId"] == "00u1abcdEFGHijkl0x7" and user["active"] is True
    assert "password" not in user
    assert {"created", "lastModified", "location"} <= set(user["meta"])
    assert r.headers["location"].endswith(f"/scim/v1/Users/{user['id']}")
    got = client.get(f"{V1}/Users/{user['id']}", headers=AUTH).json()
    assert got["displayName"] == "Alice Smith"


def test_unknown_attributes_are_ignored(client):
    r = client.post(f"{V1}/Users", json={"userName": "x@y.z", "favouriteColour": "blue"}, headers=AUTH)
    assert r.status_code == 201
    assert "favouriteColour" not in r.json()
    assert r.headers["x-demo-ignored-attributes"] == "favouriteColour"


def test_v1_duplicate_gives_409_errors_body(client):
    new_user(client, V1, "dup@example.com")
    r = client.post(f"{V1}/Users", json={"schemas": [CORE11], "userName": "DUP@example.com"}, headers=AUTH)
    assert r.status_code == 409
    body = r.json()
    assert list(body) == ["Errors"] and body["Errors"][0]["code"] == 409
    assert body["Errors"][0]["description"]


def test_v2_duplicate_gives_409_scim_error(client):
    new_user(client, V2, "dup@example.com")
    r = client.post(f"{V2}/Users", json={"schemas": [USER20], "userName": "dup@EXAMPLE.com"}, headers=AUTH)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/scim+json")
    body = r.json()
    assert body["schemas"] == [ERROR20] and body["status"] == "409" and body["detail"]


def test_missing_username_is_400(client):
    r = client.post(f"{V2}/Users", json={"schemas": [USER20]}, headers=AUTH)
    assert r.status_code == 400 and r.json()["status"] == "400"
    r = client.post(f"{V2}/Users", content=b"{not json", headers=AUTH)
    assert r.status_code == 400 and r.json()["scimType"] == "invalidSyntax"


def test_filters(client):
    new_user(client, V1, "Carol@Example.com", externalId="00uCAROL",
             emails=[{"value": "carol@work.example", "primary": True, "type": "work"}])
    new_user(client, V1, "dave@example.com", emails=[{"value": "dave@work.example"}])
    # URL-encoded exactly like Okta does it
    encoded = quote('userName eq "carol@example.com"')
    url = f"{V1}/Users?filter={encoded}&startIndex=1&count=100"
    body = client.get(url, headers=AUTH).json()
    assert body["totalResults"] == 1 and body["Resources"][0]["userName"] == "Carol@Example.com"
    assert find(client, V1, 'externalId eq "00uCAROL"')["totalResults"] == 1
    assert find(client, V1, 'emails eq "dave@work.example"')["totalResults"] == 1
    both = find(client, V2, 'email eq "carol@work.example" OR email eq "dave@work.example"')
    assert both["totalResults"] == 2
    assert find(client, V2, 'userName sw "carol" and active eq true')["totalResults"] == 1
    nothing = find(client, V1, 'userName eq "nobody@example.com"')
    assert nothing["totalResults"] == 0 and nothing["Resources"] == []
    r = client.get(f"{V2}/Users", params={"filter": 'userName eq "x'}, headers=AUTH)
    assert r.status_code == 400 and r.json()["scimType"] == "invalidFilter"


def test_filter_parser_units():
    user = {"userName": "A", "name": {"givenName": "Ann"}, "emails": [{"value": "a@x"}],
            ENTERPRISE: {"department": "Ops"}, "active": False}
    assert compile_filter('name.givenName eq "ann"')(user)
    assert compile_filter(f'{ENTERPRISE}:department eq "ops"')(user)
    assert compile_filter(f'{USER20}:userName eq "a"')(user)
    assert compile_filter('not (active eq true) and emails.value pr')(user)
    assert not compile_filter('userName ne "a"')(user)
    with pytest.raises(FilterError):
        compile_filter("userName zz 1")


def test_pagination_is_stable_with_integer_total(client):
    ids = [new_user(client, V1, f"u{i}@example.com")["id"] for i in range(5)]
    seen = []
    start = 1
    while True:
        page = client.get(f"{V1}/Users", params={"startIndex": start, "count": 2}, headers=AUTH).json()
        assert page["totalResults"] == 5 and isinstance(page["totalResults"], int)
        assert page["startIndex"] == start and page["itemsPerPage"] == len(page["Resources"])
        seen += [u["id"] for u in page["Resources"]]
        start += 2
        if start > page["totalResults"]:
            break
    assert seen == ids
    probe = client.get(f"{V1}/Users?startIndex=1&count=2", headers=AUTH).json()  # Okta's test call
    assert len(probe["Resources"]) == 2
    assert client.get(f"{V2}/Users?count=0", headers=AUTH).json()["Resources"] == []


def test_get_missing_is_404_in_both_dialects(client):
    r1 = client.get(f"{V1}/Users/nope", headers=AUTH)
    assert r1.status_code == 404 and r1.json()["Errors"][0]["code"] == 404
    r2 = client.get(f"{V2}/Users/nope", headers=AUTH)
    assert r2.status_code == 404 and r2.json()["status"] == "404"


def test_500_instead_of_404_quirk():
    c = make_client("500-instead-of-404")
    assert c.get(f"{V2}/Users/nope", headers=AUTH).status_code == 404
    assert c.patch(f"{V2}/Users/nope", json={"schemas": [PATCHOP], "Operations": []},
                   headers=AUTH).status_code == 500
    assert c.delete(f"{V1}/Groups/nope", headers=AUTH).status_code == 500


def test_put_replaces_and_keeps_id(client):
    user = new_user(client, V1, "eve@example.com", displayName="Eve", title="Boss")
    body = {"schemas": [CORE11], "id": "ignored", "userName": "eve2@example.com",
            "name": {"givenName": "Eve"}, "active": False}
    r = client.put(f"{V1}/Users/{user['id']}", json=body, headers=AUTH)
    assert r.status_code == 200
    out = r.json()
    assert out["id"] == user["id"] and out["userName"] == "eve2@example.com"
    assert out["active"] is False and "displayName" not in out and "title" not in out
    other = new_user(client, V1, "frank@example.com")
    r = client.put(f"{V1}/Users/{other['id']}", json={"userName": "EVE2@example.com"}, headers=AUTH)
    assert r.status_code == 409


@pytest.mark.parametrize("prefix", [V1, V2])
def test_etags_on_every_answer_and_if_match_honoured_with_412(client, prefix):
    user = new_user(client, prefix, "ida@example.com", title="Boss")
    url = f"{prefix}/Users/{user['id']}"
    got = client.get(url, headers=AUTH)
    assert got.headers["etag"] == got.json()["meta"]["version"] == 'W/"1"'
    stale = {**AUTH, "If-Match": 'W/"1"'}
    ok = client.put(url, json={"userName": "ida@example.com", "title": "CEO"}, headers=stale)
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'
    for method, body in (("PUT", {"userName": "ida@example.com"}), ("PATCH", {"title": "X"}), ("DELETE", None)):
        refused = client.request(method, url, json=body, headers=stale)
        assert refused.status_code == 412 and refused.headers["etag"] == 'W/"2"', method
    assert client.get(url, headers=AUTH).json()["title"] == "CEO"  # nothing changed by the refused writes
    for tags in ('"2"', 'W/"9", W/"3"', "*"):  # compared weakly; a list; any version (each PUT: +1)
        assert client.put(url, json={"userName": "ida@example.com", "title": tags}, headers={
            **AUTH, "If-Match": tags}).status_code == 200
    assert client.put(url, json={"userName": "ida@example.com"}, headers=AUTH).status_code == 200  # no condition


def test_put_is_a_full_replace_of_rfc_attributes_kept(client):
    """The target keeps RFC 7643's User attributes (roles, entitlements, addresses…), and a PUT that leaves one
    out clears it, as RFC 7644 §3.5.1 allows: what a bridge must not do by accident."""
    extra = {"roles": [{"value": "admin"}], "entitlements": [{"value": "e1"}], "phoneNumbers": [{"value": "1"}],
             "addresses": [{"locality": "Oslo"}], ENTERPRISE: {"costCenter": "9"}}
    user = new_user(client, V2, "jon@example.com", **extra)
    assert {k: user[k] for k in extra} == extra
    r = client.put(f"{V2}/Users/{user['id']}", json={"userName": "jon@example.com"}, headers=AUTH)
    assert not set(extra) & set(r.json())


def test_v1_patch_deactivate_like_catalog_apps(client):
    user = new_user(client, V1, "gina@example.com", displayName="Gina")
    body = fixture("okta_v1_deactivate_patch.json") | {"id": user["id"]}
    r = client.patch(f"{V1}/Users/{user['id']}", json=body, headers=AUTH)
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["displayName"] == "Gina"
    r = client.patch(f"{V1}/Users/{user['id']}", json={"schemas": [CORE11], "active": True}, headers=AUTH)
    assert r.json()["active"] is True


def test_v2_patch_deactivate_and_path_operations(client):
    user = new_user(client, V2, "hank@example.com", name={"givenName": "Hank", "familyName": "H"},
                    emails=[{"value": "hank@work", "type": "work", "primary": True},
                            {"value": "hank@home", "type": "home"}])
    url = f"{V2}/Users/{user['id']}"
    r = client.patch(url, json=fixture("okta_v2_deactivate_patch.json"), headers=AUTH)
    assert r.status_code == 200 and r.json()["active"] is False
    ops = [{"op": "Replace", "path": "name.givenName", "value": "Henry"},
           {"op": "replace", "path": 'emails[type eq "work"].value', "value": "henry@work"},
           {"op": "remove", "path": 'emails[type eq "home"]'},
           {"op": "add", "path": f"{ENTERPRISE}:department", "value": "R&D"},
           {"op": "add", "value": {"displayName": "Henry H", "active": True}}]
    r = client.patch(url, json={"schemas": [PATCHOP], "Operations": ops},
                     headers={**AUTH, "Content-Type": "application/scim+json"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["name"] == {"givenName": "Henry", "familyName": "H"}
    assert out["emails"] == [{"value": "henry@work", "type": "work", "primary": True}]
    assert out[ENTERPRISE] == {"department": "R&D"} and ENTERPRISE in out["schemas"]
    assert out["displayName"] == "Henry H" and out["active"] is True
    r = client.patch(url, json={"schemas": [PATCHOP], "Operations": [
        {"op": "remove", "path": ENTERPRISE}, {"op": "remove", "path": "emails"}]}, headers=AUTH)
    assert ENTERPRISE not in r.json() and "emails" not in r.json()
    bad = client.patch(url, json={"schemas": [PATCHOP], "Operations": [{"op": "move"}]}, headers=AUTH)
    assert bad.status_code == 400 and bad.json()["schemas"] == [ERROR20]


def test_patch_204_quirk():
    c = make_client("patch-204")
    user = new_user(c, V2, "ivy@example.com")
    r = c.patch(f"{V2}/Users/{user['id']}", json=fixture("okta_v2_deactivate_patch.json"), headers=AUTH)
    assert r.status_code == 204 and r.content == b""
    assert c.get(f"{V2}/Users/{user['id']}", headers=AUTH).json()["active"] is False


def test_id_equals_username_quirk():
    c = make_client("id-equals-username")
    user = new_user(c, V1, "jack@example.com")
    assert user["id"] == "jack@example.com"
    assert c.get(f"{V1}/Users/jack@example.com", headers=AUTH).status_code == 200
    g = c.post(f"{V2}/Groups", json={"schemas": [GROUP20], "displayName": "Admins"}, headers=AUTH).json()
    assert g["id"] == "Admins"


def test_v2_create_user_with_enterprise_extension_and_attribute_selection(client):
    r = client.post(f"{V2}/Users", json=fixture("okta_v2_create_user.json"),
                    headers={**AUTH, "Content-Type": "application/scim+json"})
    assert r.status_code == 201
    user = r.json()
    assert user["schemas"] == [USER20, ENTERPRISE] and user[ENTERPRISE]["employeeNumber"] == "4711"
    url = f"{V2}/Users/{user['id']}"
    only = client.get(url, params={"attributes": "userName,name.givenName"}, headers=AUTH).json()
    assert set(only) == {"schemas", "id", "meta", "userName", "name"}
    assert only["name"] == {"givenName": "Bob"}
    without = client.get(url, params={"excludedAttributes": f"emails,{ENTERPRISE}:department"},
                         headers=AUTH).json()
    assert "emails" not in without and without[ENTERPRISE] == {"employeeNumber": "4711"}
    search = client.post(f"{V2}/.search", json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                                                "attributes": ["userName"]}, headers=AUTH).json()
    assert search["totalResults"] == 1 and "emails" not in search["Resources"][0]


def test_delete_user(client):
    user = new_user(client, V2, "kim@example.com")
    assert client.delete(f"{V2}/Users/{user['id']}", headers=AUTH).status_code == 204
    assert client.get(f"{V2}/Users/{user['id']}", headers=AUTH).status_code == 404
    assert client.delete(f"{V2}/Users/{user['id']}", headers=AUTH).status_code == 404


# --- groups ------------------------------------------------------------------------------------

def test_v1_groups_push_membership_and_delete(client):
    a = new_user(client, V1, "a@example.com")
    b = new_user(client, V1, "b@example.com")
    r = client.post(f"{V1}/Groups", json={"schemas": [CORE11, "urn:okta:custom:group:1.0"],
                                          "displayName": "Jira Users",
                                          "urn:okta:custom:group:1.0": {"description": "All"}},
                    headers=AUTH)
    assert r.status_code == 201
    group = r.json()
    assert group["urn:okta:custom:group:1.0"] == {"description": "All"}
    url = f"{V1}/Groups/{group['id']}"
    body = {"schemas": [CORE11], "id": group["id"], "displayName": "Jira Users",
            "members": [{"value": a["id"], "display": "a"}, {"value": b["id"], "display": "b"}]}
    assert client.patch(url, json=body, headers=AUTH).status_code == 200
    removal = {"schemas": [CORE11], "id": group["id"], "displayName": "Jira Users 2",
               "members": [{"value": a["id"], "display": "a", "operation": "delete"}]}
    out = client.patch(url, json=removal, headers=AUTH).json()
    assert [m["value"] for m in out["members"]] == [b["id"]] and out["displayName"] == "Jira Users 2"
    user_b = client.get(f"{V1}/Users/{b['id']}", headers=AUTH).json()
    assert [g["value"] for g in user_b["groups"]] == [group["id"]]
    found = client.get(f"{V1}/Groups", params={"filter": 'displayName eq "jira users 2"'}, headers=AUTH).json()
    assert found["totalResults"] == 1
    assert client.get(f"{V1}/Groups?startIndex=1&count=100", headers=AUTH).json()["totalResults"] == 1
    dup = client.post(f"{V1}/Groups", json={"displayName": "JIRA USERS 2"}, headers=AUTH)
    assert dup.status_code == 409 and dup.json()["Errors"][0]["code"] == 409
    assert client.delete(url, headers=AUTH).status_code == 204
    assert client.get(url, headers=AUTH).status_code == 404


def test_v2_group_membership_patch_ops(client):
    a = new_user(client, V2, "a@example.com")
    b = new_user(client, V2, "b@example.com")
    r = client.post(f"{V2}/Groups", json={"schemas": [GROUP20], "displayName": "Devs", "members": []},
                    headers=AUTH)
    assert r.status_code == 201 and r.headers["content-type"].startswith("application/scim+json")
    url = f"{V2}/Groups/{r.json()['id']}"

    def patch(*ops):
        resp = client.patch(url, json={"schemas": [PATCHOP], "Operations": list(ops)}, headers=AUTH)
        assert resp.status_code == 200, resp.text
        return [m["value"] for m in resp.json().get("members", [])]

    assert patch({"op": "add", "path": "members", "value": [{"value": a["id"]}, {"value": b["id"]}]}) \
        == [a["id"], b["id"]]
    assert patch({"op": "remove", "path": f'members[value eq "{a["id"]}"]'}) == [b["id"]]
    assert patch({"op": "replace", "path": "members", "value": [{"value": a["id"]}]}) == [a["id"]]
    assert patch({"op": "replace", "value": {"id": "x", "displayName": "Developers"}}) == [a["id"]]
    assert client.get(url, headers=AUTH).json()["displayName"] == "Developers"
    bad = client.patch(url, json={"schemas": [PATCHOP], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": "ghost"}]}]}, headers=AUTH)
    assert bad.status_code == 400
    # deleting a user drops it from its groups
    client.delete(f"{V2}/Users/{a['id']}", headers=AUTH)
    assert "members" not in client.get(url, headers=AUTH).json()


# --- discovery -----------------------------------------------------------------------------------

def test_v1_service_provider_configs(client):
    r = client.get(f"{V1}/ServiceProviderConfigs", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["schemas"] == [CORE11, "urn:okta:schemas:scim:providerconfig:1.0"]
    caps = body["urn:okta:schemas:scim:providerconfig:1.0"]["userManagementCapabilities"]
    assert {"GROUP_PUSH", "PUSH_NEW_USERS", "PUSH_USER_DEACTIVATION", "REACTIVATE_USERS"} <= set(caps)
    assert client.get(f"{V1}/ServiceProviderConfig", headers=AUTH).status_code == 404


def test_v2_discovery(client):
    spc = client.get(f"{V2}/ServiceProviderConfig", headers=AUTH)
    assert spc.status_code == 200 and spc.json()["patch"]["supported"] is True
    assert spc.json()["etag"]["supported"] is True
    assert spc.headers["content-type"] == "application/scim+json"
    schemas = client.get(f"{V2}/Schemas", headers=AUTH).json()
    assert {s["id"] for s in schemas["Resources"]} == {USER20, GROUP20, ENTERPRISE}
    assert client.get(f"{V2}/Schemas/{USER20}", headers=AUTH).json()["name"] == "User"
    assert client.get(f"{V2}/ResourceTypes/Group", headers=AUTH).json()["endpoint"] == "/Groups"
    assert client.post(f"{V2}/ServiceProviderConfig", headers=AUTH).status_code == 405
    missing = client.get(f"{V2}/Nope", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["schemas"] == [ERROR20]


def test_v2_application_json_quirk():
    r = make_client("v2-application-json").get(f"{V2}/Users", headers=AUTH)
    assert r.headers["content-type"] == "application/json"


# --- admin: request log, users, reset -------------------------------------------------------------

def test_request_log_redacts_passwords(client):
    client.post(f"{V1}/Users", json=fixture("okta_v1_create_user.json"), headers=AUTH)
    user = client.get("/_admin/users").json()[0]
    assert user["_password"] == "S3cret!pass"
    client.patch(f"{V2}/Users/{user['id']}", headers=AUTH, json={"schemas": [PATCHOP], "Operations": [
        {"op": "replace", "path": "password", "value": "N3w!pass"},
        {"op": "replace", "value": {"password": "Other!pass"}}]})
    log = client.get("/_admin/requests").json()
    text = json.dumps(log)
    assert "S3cret" not in text and "N3w!pass" not in text and "Other!pass" not in text
    first, second = log["requests"]
    assert first["seq"] == 1 and first["method"] == "POST" and first["status"] == 201
    assert first["body"]["password"] == "***REDACTED***" and first["body"]["userName"] == "alice@example.com"
    assert second["body"]["Operations"][0]["value"] == "***REDACTED***"
    assert client.get("/_admin/users").json()[0]["_password"] == "Other!pass"
    assert [e["seq"] for e in client.get("/_admin/requests?since=1").json()["requests"]] == [2]
    client.get(f"{V1}/Users?filter=userName%20eq%20%22x%22", headers=AUTH)
    last = client.get("/_admin/requests?since=2").json()["requests"][0]
    assert last["query"] == "filter=userName%20eq%20%22x%22" and last["path"] == "/scim/v1/Users"


def test_reset_clears_everything(client):
    new_user(client, V1, "z@example.com")
    client.post("/_admin/faults", json=[{"status": 500}])
    assert client.post("/_admin/reset").status_code == 204
    assert client.get("/_admin/users").json() == [] and client.get("/_admin/faults").json() == []
    log = client.get("/_admin/requests").json()
    assert log["requests"] == [] and log["last_seq"] == 1


# --- faults ------------------------------------------------------------------------------------

def test_fault_html_500_limited_times(client):
    client.post("/_admin/faults", json={"method": "GET", "path_regex": "/Users$", "status": 500,
                                        "body": "<html>boom</html>", "content_type": "text/html",
                                        "times": 1})
    r = client.get(f"{V2}/Users", headers=AUTH)
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html") and "boom" in r.text
    assert client.get(f"{V2}/Users", headers=AUTH).status_code == 200
    assert client.get("/_admin/requests").json()["requests"][0]["fault"] is not None


def test_fault_429_retry_after_and_default_error_body(client):
    client.post("/_admin/faults", json=[{"status": 429, "headers": {"Retry-After": "3"}, "path_regex": "/scim/v1/"}])
    r = client.get(f"{V1}/Users", headers=AUTH)
    assert r.status_code == 429 and r.headers["retry-after"] == "3" and r.json()["Errors"][0]["code"] == 429
    assert client.get(f"{V2}/Users", headers=AUTH).status_code == 200  # regex does not match v2
    assert client.delete("/_admin/faults").status_code == 204
    assert client.get(f"{V1}/Users", headers=AUTH).status_code == 200


def test_fault_empty_body_on_create(client):
    # short-circuit: answer 201 with nothing, the user is NOT created
    client.post("/_admin/faults", json={"method": "POST", "status": 201, "empty_body": True, "times": 1})
    r = client.post(f"{V1}/Users", json={"userName": "n@example.com"}, headers=AUTH)
    assert r.status_code == 201 and r.content == b""
    assert client.get("/_admin/users").json() == []
    # pass-through: the user IS created but the body is stripped
    client.post("/_admin/faults", json={"method": "POST", "empty_body": True, "times": 1})
    r = client.post(f"{V1}/Users", json={"userName": "n@example.com"}, headers=AUTH)
    assert r.status_code == 201 and r.content == b""
    assert [u["userName"] for u in client.get("/_admin/users").json()] == ["n@example.com"]


def test_fault_plain_401_and_validation(client):
    client.post("/_admin/faults", json={"status": 401, "body": "Unauthorized", "content_type": "text/plain"})
    r = client.get(f"{V2}/Users", headers=AUTH)
    assert r.status_code == 401 and r.text == "Unauthorized"
    assert client.post("/_admin/faults", json={"status": 99}).status_code == 422
    assert client.post("/_admin/faults", json={"path_regex": "("}).status_code == 422


async def test_admin_client_and_delay_fault():
    app = create_app(TargetConfig(token=TOKEN))
    transport = httpx.ASGITransport(app=app)
    async with TargetAdmin("http://target", transport=transport) as admin, \
            httpx.AsyncClient(base_url="http://target", transport=transport, headers=AUTH) as scim:
        rule = await admin.add_fault(method="GET", path_regex="/Users", delay_s=0.3, times=1)
        assert rule["id"] and (await admin.faults())[0]["delay_s"] == 0.3
        started = time.monotonic()
        assert (await scim.get(f"{V2}/Users")).status_code == 200
        assert time.monotonic() - started >= 0.3
        await admin.add_fault(404, path_regex="/Groups")
        assert (await scim.get(f"{V2}/Groups")).status_code == 404
        await admin.clear_faults()
        assert (await scim.get(f"{V2}/Groups")).status_code == 200
        await admin.seed_user({"userName": "seeded@example.com", "password": "pw"})
        users = await admin.users()
        assert users[0]["userName"] == "seeded@example.com" and users[0]["_password"] == "pw"
        log = await admin.requests()
        assert [e["path"] for e in log] == [f"{V2}/Users", f"{V2}/Groups", f"{V2}/Groups"]
        assert await admin.last_seq() == 3 and await admin.requests(since=3) == []
        await admin.reset()
        assert await admin.users() == [] and await admin.groups() == []


def test_cli_args_and_env(monkeypatch):
    monkeypatch.setenv("DEMO_SCIM_PORT", "9999")
    monkeypatch.setenv("DEMO_SCIM_QUIRKS", "patch-204, plain-text-401")
    args = parse_args(["--token", "t"])
    assert args.port == 9999 and args.token == "t" and args.quirk == ["patch-204", "plain-text-401"]
    args = parse_args(["--quirk", "id-equals-username", "--name", "jira"])
    assert args.quirk == ["id-equals-username"] and args.name == "jira"
    with pytest.raises(ValueError):
        TargetConfig(quirks=frozenset({"nope"}))
