"""OIDC sign-in at the simulator's org authorization server (okta_simulator.oidc), in process with a controlled
clock: discovery, the authorization code flow with PKCE from the sign-in page to an ID token verified with the JWKS,
userinfo and logout, and each refusal (unregistered redirect URI, no or plain PKCE, wrong verifier, replayed or
expired code, wrong client secret, wrong password, inactive user, user without password)."""
from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from html import unescape
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from okta_bridge.jose import b64url, decode_unverified, encode_jwt, generate_rsa_key, public_from_jwk, verify_jwt
from okta_simulator import Settings, SimulatorAdmin, create_app
from okta_simulator.cli import parse_args, settings_from

ORG = "https://acme.okta.com"
CLIENT_ID = "0oaconsole0000000001"
SECRET = "console-secret-0123456789"
REDIRECT = "https://console.example.com/auth/callback"
AFTER_LOGOUT = "https://console.example.com/signed-out"
SSWS = {"Authorization": "SSWS tok"}
PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock):
    return create_app(Settings(org_url=ORG, tokens={"tok": "00Tconsole0000000001"}), clock)


@pytest.fixture
async def http(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORG) as client:
        yield client


@pytest.fixture
async def org(http) -> dict:
    """An OIDC web app whose groups claim takes `Console-*` groups, and Ada (password, two groups, one matching)."""
    admin = SimulatorAdmin(ORG, client=http)
    await admin.add_oidc_client(CLIENT_ID, SECRET, [REDIRECT], "Console-.*", post_logout_redirect_uris=[AFTER_LOGOUT])
    admins = await admin.create_group("Console-Admins")
    others = await admin.create_group("Engineering")
    body = {"profile": {"login": "ada@example.com", "email": "ada@example.com", "firstName": "Ada",
                        "lastName": "Lovelace"},
            "credentials": {"password": {"value": PASSWORD}}, "groupIds": [admins, others]}
    r = await http.post("/api/v1/users", json=body, headers=SSWS)
    assert r.status_code == 200, r.text
    return {"admin": admin, "ada": r.json()["id"], "user_json": r.json()}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def authorize_params(challenge: str, **changes) -> dict:
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT,
              "scope": "openid profile email groups", "state": "st-1", "nonce": "n-1", "code_challenge": challenge,
              "code_challenge_method": "S256"}
    return {k: v for k, v in {**params, **changes}.items() if v is not None}


def hidden_fields(html: str) -> dict[str, str]:
    return {m[0]: unescape(m[1]) for m in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)}


async def sign_in(http, challenge: str, username: str = "ada@example.com", password: str = PASSWORD,
                  **changes) -> httpx.Response:
    page = await http.get("/oauth2/v1/authorize", params=authorize_params(challenge, **changes))
    assert page.status_code == 200, page.text
    form = {**hidden_fields(page.text), "username": username, "password": password}
    return await http.post("/oauth2/v1/authorize", data=form)


def query_of(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


async def code_for(http, challenge: str, **changes) -> str:
    return query_of(await sign_in(http, challenge, **changes))["code"]


async def exchange(http, code: str, verifier: str, *, secret: str = SECRET, redirect_uri: str = REDIRECT,
                   basic: bool = True) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}
    if basic:
        return await http.post("/oauth2/v1/token", data=form, auth=(CLIENT_ID, secret))
    return await http.post("/oauth2/v1/token", data={**form, "client_id": CLIENT_ID, "client_secret": secret})


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error and response.json()["error_description"]


# ------------------------------------------------------------------ discovery and the whole flow

async def test_discovery_names_the_org_server_endpoints(http) -> None:
    meta = (await http.get("/.well-known/openid-configuration")).json()
    assert meta["issuer"] == ORG
    assert {k: meta[k] for k in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint",
                                 "end_session_endpoint")} == {
        "authorization_endpoint": f"{ORG}/oauth2/v1/authorize", "token_endpoint": f"{ORG}/oauth2/v1/token",
        "jwks_uri": f"{ORG}/oauth2/v1/keys", "userinfo_endpoint": f"{ORG}/oauth2/v1/userinfo",
        "end_session_endpoint": f"{ORG}/oauth2/v1/logout"}
    assert meta["response_types_supported"] == ["code"] and meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"authorization_code", "client_credentials"} <= set(meta["grant_types_supported"])
    assert {"openid", "profile", "email", "groups"} <= set(meta["scopes_supported"])
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(
        meta["token_endpoint_auth_methods_supported"])


async def test_sign_in_gives_an_id_token_signed_by_the_published_key(http, org, clock) -> None:
    verifier, challenge = pkce()
    page = await http.get("/oauth2/v1/authorize", params=authorize_params(challenge))
    assert page.status_code == 200 and "<title>Sign In</title>" in page.text
    assert 'name="username"' in page.text and 'name="password"' in page.text
    assert 'id="okta-signin-submit"' in page.text and 'action="/oauth2/v1/authorize"' in page.text
    clock.now += 5
    back = await http.post("/oauth2/v1/authorize", data={**hidden_fields(page.text), "username": "ADA@example.com",
                                                         "password": PASSWORD})
    assert back.headers["location"].startswith(REDIRECT + "?")
    answer = query_of(back)
    assert answer["state"] == "st-1" and set(answer) == {"code", "state"}

    tokens = await exchange(http, answer["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "openid profile email groups" and body["access_token"]
    assert tokens.headers["cache-control"] == "no-store"

    jwks = (await http.get("/oauth2/v1/keys")).json()["keys"]
    header, _ = decode_unverified(body["id_token"])
    assert header["alg"] == "RS256" and [k["kid"] for k in jwks] == [header["kid"]]
    claims = verify_jwt(body["id_token"], public_from_jwk(jwks[0]), now=clock.now)
    now = int(clock.now)
    assert claims["iss"] == ORG and claims["sub"] == org["ada"] and claims["aud"] == CLIENT_ID
    assert claims["iat"] == now and claims["exp"] == now + 3600 and claims["auth_time"] == now
    assert claims["nonce"] == "n-1" and claims["amr"] == ["pwd"] and claims["idp"].startswith("00o")
    assert claims["name"] == "Ada Lovelace" and claims["preferred_username"] == "ada@example.com"
    assert claims["email"] == "ada@example.com" and claims["email_verified"] is True
    assert claims["groups"] == ["Console-Admins"]  # "Engineering" does not match the app's filter

    info = await http.get("/oauth2/v1/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.json()["sub"] == org["ada"] and info.json()["groups"] == ["Console-Admins"]
    assert info.json()["name"] == "Ada Lovelace" and info.json()["email"] == "ada@example.com"
    user = (await http.get(f"/api/v1/users/{org['ada']}", headers=SSWS)).json()
    assert user["lastLogin"] is not None


async def test_scopes_decide_the_claims_and_client_secret_post_works(http, org) -> None:
    verifier, challenge = pkce()
    code = await code_for(http, challenge, scope="openid", nonce=None)
    tokens = await exchange(http, code, verifier, basic=False)
    assert tokens.status_code == 200, tokens.text
    _, claims = decode_unverified(tokens.json()["id_token"])
    assert "nonce" not in claims and not {"name", "email", "groups", "preferred_username"} & set(claims)
    assert tokens.json()["scope"] == "openid"


async def test_the_groups_filter_is_a_full_match(http, org) -> None:
    admin = org["admin"]
    await admin.add_oidc_client("0oaother", SECRET, [REDIRECT], "Admins")  # "Console-Admins" only contains it
    verifier, challenge = pkce()
    code = await code_for(http, challenge, client_id="0oaother")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    tokens = await http.post("/oauth2/v1/token", data=form, auth=("0oaother", SECRET))
    assert decode_unverified(tokens.json()["id_token"])[1]["groups"] == []


# ------------------------------------------------------------------ /authorize refusals

@pytest.mark.parametrize("changes", [{"redirect_uri": "https://evil.example.com/cb"},
                                     {"redirect_uri": REDIRECT + "/"}, {"redirect_uri": None},
                                     {"client_id": "0oanobody"}])
async def test_an_unknown_client_or_redirect_uri_gets_an_error_page_not_a_redirect(http, org, changes) -> None:
    r = await http.get("/oauth2/v1/authorize", params=authorize_params(pkce()[1], **changes))
    assert r.status_code == 400 and "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("changes, error", [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "profile email"}, "invalid_scope"),
    ({"scope": "openid okta.users.manage"}, "invalid_scope"),
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
])
async def test_other_authorize_errors_go_back_to_the_redirect_uri(http, org, changes, error) -> None:
    r = await http.get("/oauth2/v1/authorize", params=authorize_params(pkce()[1], **changes))
    answer = query_of(r)
    assert r.headers["location"].startswith(REDIRECT + "?")
    assert answer["error"] == error and answer["error_description"] and answer["state"] == "st-1"
    assert "code" not in answer


# ------------------------------------------------------------------ sign-in refusals

async def test_a_wrong_password_shows_the_form_again(http, org) -> None:
    r = await sign_in(http, pkce()[1], password="wrong")
    assert r.status_code == 401 and "location" not in r.headers
    assert "Unable to sign in" in r.text and 'id="okta-signin-submit"' in r.text
    retry = {**hidden_fields(r.text), "username": "ada@example.com", "password": PASSWORD}
    assert "code" in query_of(await http.post("/oauth2/v1/authorize", data=retry))  # the same request, now right


async def test_an_unknown_user_is_refused_like_a_wrong_password(http, org) -> None:
    r = await sign_in(http, pkce()[1], username="nobody@example.com")
    assert r.status_code == 401 and "Unable to sign in" in r.text


@pytest.mark.parametrize("action", ["suspend", "deactivate"])
async def test_an_inactive_user_cannot_sign_in(http, org, action) -> None:
    await org["admin"].lifecycle(org["ada"], action)
    r = await sign_in(http, pkce()[1])
    assert r.status_code == 401 and "Unable to sign in" in r.text and "location" not in r.headers


async def test_a_user_without_a_password_cannot_sign_in_until_one_is_set(http, org) -> None:
    admin = org["admin"]
    bob = await admin.create_user({"login": "bob@example.com", "firstName": "Bob", "lastName": "B"})
    r = await sign_in(http, pkce()[1], username="bob@example.com", password="")
    assert r.status_code == 401 and "Unable to sign in" in r.text
    assert await admin.set_password(bob, "bobs new password") == bob
    assert "code" in query_of(await sign_in(http, pkce()[1], username="bob@example.com",
                                            password="bobs new password"))
    events = [e["eventType"] for e in await admin.events()]
    assert "user.account.update_password" in events


async def test_a_blank_password_is_refused(http, org) -> None:
    r = await http.post(f"/_admin/users/{org['ada']}/password", json={"password": ""})
    assert r.status_code == 400 and "Password requirements" in r.text


async def test_an_expired_sign_in_request_is_an_error_page(http, org, clock) -> None:
    page = await http.get("/oauth2/v1/authorize", params=authorize_params(pkce()[1]))
    clock.now += 601
    r = await http.post("/oauth2/v1/authorize", data={**hidden_fields(page.text), "username": "ada@example.com",
                                                      "password": PASSWORD})
    assert r.status_code == 400 and "location" not in r.headers


# ------------------------------------------------------------------ /token refusals

async def test_a_wrong_verifier_is_invalid_grant(http, org) -> None:
    verifier, challenge = pkce()
    code = await code_for(http, challenge)
    assert_oauth_error(await exchange(http, code, pkce()[0]), 400, "invalid_grant")
    r = await http.post("/oauth2/v1/token", data={"grant_type": "authorization_code", "code": code,
                                                  "redirect_uri": REDIRECT}, auth=(CLIENT_ID, SECRET))
    assert_oauth_error(r, 400, "invalid_request")  # no verifier at all


async def test_a_code_is_good_once_and_its_replay_revokes_the_token(http, org) -> None:
    verifier, challenge = pkce()
    code = await code_for(http, challenge)
    first = await exchange(http, code, verifier)
    assert first.status_code == 200
    assert_oauth_error(await exchange(http, code, verifier), 400, "invalid_grant")
    bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert (await http.get("/oauth2/v1/userinfo", headers=bearer)).status_code == 401


async def test_a_code_lives_sixty_seconds(http, org, clock) -> None:
    verifier, challenge = pkce()
    code = await code_for(http, challenge)
    clock.now += 60
    assert_oauth_error(await exchange(http, code, verifier), 400, "invalid_grant")


async def test_a_wrong_client_secret_is_invalid_client(http, org) -> None:
    verifier, challenge = pkce()
    code = await code_for(http, challenge)
    basic = await exchange(http, code, verifier, secret="not-the-secret")
    assert_oauth_error(basic, 401, "invalid_client")
    assert basic.headers["www-authenticate"].startswith("Basic")
    assert_oauth_error(await exchange(http, code, verifier, secret="not-the-secret", basic=False), 401,
                       "invalid_client")
    assert (await exchange(http, code, verifier)).status_code == 200  # the code was not spent by those


async def test_the_redirect_uri_must_be_the_one_authorized(http, org) -> None:
    verifier, challenge = pkce()
    code = await code_for(http, challenge)
    assert_oauth_error(await exchange(http, code, verifier, redirect_uri=REDIRECT + "?x=1"), 400, "invalid_grant")


async def test_a_code_belongs_to_its_client(http, org) -> None:
    await org["admin"].add_oidc_client("0oaother", "other-secret", [REDIRECT])
    verifier, challenge = pkce()
    code = await code_for(http, challenge)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    r = await http.post("/oauth2/v1/token", data=form, auth=("0oaother", "other-secret"))
    assert_oauth_error(r, 400, "invalid_grant")


async def test_two_client_authentications_at_once_are_invalid_request(http, org) -> None:
    verifier, challenge = pkce()
    code = await code_for(http, challenge)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            "client_secret": SECRET}
    assert_oauth_error(await http.post("/oauth2/v1/token", data=form, auth=(CLIENT_ID, SECRET)), 400,
                       "invalid_request")


# ------------------------------------------------------------------ userinfo and logout

async def test_userinfo_needs_a_live_token(http, org, clock) -> None:
    verifier, challenge = pkce()
    token = (await exchange(http, await code_for(http, challenge), verifier)).json()["access_token"]
    assert (await http.get("/oauth2/v1/userinfo")).status_code == 401
    clock.now += 3600
    r = await http.get("/oauth2/v1/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


async def test_logout_goes_to_the_registered_uri_and_ends_the_tokens(http, org) -> None:
    verifier, challenge = pkce()
    body = (await exchange(http, await code_for(http, challenge), verifier)).json()
    r = await http.get("/oauth2/v1/logout", params={"id_token_hint": body["id_token"],
                                                     "post_logout_redirect_uri": AFTER_LOGOUT, "state": "bye"})
    assert r.status_code == 302 and r.headers["location"] == f"{AFTER_LOGOUT}?state=bye"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await http.get("/oauth2/v1/userinfo", headers=bearer)).status_code == 401
    plain = await http.get("/oauth2/v1/logout", params={"id_token_hint": body["id_token"]})
    assert plain.status_code == 200 and "signed out" in plain.text.lower()
    elsewhere = await http.get("/oauth2/v1/logout", params={"id_token_hint": body["id_token"],
                                                             "post_logout_redirect_uri": "https://evil.example.com"})
    assert elsewhere.status_code == 200 and "location" not in elsewhere.headers  # never a redirect elsewhere
    by_client = await http.get("/oauth2/v1/logout", params={"client_id": CLIENT_ID,
                                                             "post_logout_redirect_uri": AFTER_LOGOUT})
    assert by_client.status_code == 302 and by_client.headers["location"] == AFTER_LOGOUT
    assert (await http.get("/oauth2/v1/logout")).status_code == 400


async def test_logout_refuses_a_hint_the_org_did_not_sign(http, org) -> None:
    forged = encode_jwt({"iss": ORG, "aud": CLIENT_ID, "sub": org["ada"]}, generate_rsa_key(2048, kid="x"))
    r = await http.get("/oauth2/v1/logout", params={"id_token_hint": forged, "post_logout_redirect_uri": AFTER_LOGOUT})
    assert r.status_code == 400 and "location" not in r.headers


# ------------------------------------------------------------------ secrets stay secret

async def test_passwords_codes_and_tokens_appear_in_no_answer_or_log(http, org, app, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    assert org["user_json"]["credentials"]["password"] == {} and org["user_json"]["passwordChanged"]
    verifier, challenge = pkce()
    code = await code_for(http, challenge)
    body = (await exchange(http, code, verifier)).json()
    user = app.state.sim.org.users[org["ada"]]
    shown = [json.dumps((await http.get(f"/api/v1/users/{org['ada']}", headers=SSWS)).json()),
             json.dumps((await http.get("/api/v1/users", headers=SSWS)).json()),
             json.dumps(await org["admin"].events()), repr(user), repr(app.state.sim.oidc.clients[CLIENT_ID]),
             caplog.text]
    for secret in (PASSWORD, user.password_hash, code, body["access_token"], body["id_token"], SECRET):
        assert all(secret not in text for text in shown)


# ------------------------------------------------------------------ the service app and the command line

async def test_the_client_credentials_grant_still_works_beside_web_apps(clock) -> None:
    key = generate_rsa_key(2048, kid="svc")
    service = {"client_id": "0oaservice", "jwks": {"keys": [key.public_jwk()]}, "scopes": ["okta.users.read"]}
    web = {"client_id": CLIENT_ID, "client_secret": SECRET, "redirect_uris": [REDIRECT]}
    app = create_app(Settings(org_url=ORG, oauth_clients=[service], oidc_clients=[web]), clock)
    assertion = encode_jwt({"iss": "0oaservice", "sub": "0oaservice", "aud": f"{ORG}/oauth2/v1/token",
                            "iat": int(clock.now), "exp": int(clock.now) + 300, "jti": "j-1"}, key)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORG) as http:
        r = await http.post("/oauth2/v1/token", data={
            "grant_type": "client_credentials", "scope": "okta.users.read", "client_assertion": assertion,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
        assert r.status_code == 200 and r.json()["token_type"] == "Bearer" and "id_token" not in r.json()
        other = await http.post("/oauth2/v1/token", data={"grant_type": "password"})
        assert_oauth_error(other, 400, "unsupported_grant_type")
        assert CLIENT_ID in app.state.sim.oidc.clients


def test_oidc_clients_come_from_files_and_the_environment(tmp_path, monkeypatch) -> None:
    files = []
    for n in (1, 2):
        path = tmp_path / f"web{n}.json"
        path.write_text(json.dumps({"client_id": f"0oaweb{n}", "client_secret": "s", "redirect_uris": [REDIRECT]}))
        files.append(str(path))
    assert [c["client_id"] for c in settings_from(parse_args(["--oidc-client", files[0]])).oidc_clients] == ["0oaweb1"]
    monkeypatch.setenv("OKTA_SIM_OIDC_CLIENTS", ",".join(files))
    settings = settings_from(parse_args([]))
    assert [c["client_id"] for c in settings.oidc_clients] == ["0oaweb1", "0oaweb2"]
    assert sorted(create_app(settings).state.sim.oidc.clients) == ["0oaweb1", "0oaweb2"]
