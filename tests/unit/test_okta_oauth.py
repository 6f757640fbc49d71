"""OAuth 2.0 for Okta: the bridge's service-app client (okta_bridge.okta_auth) against the simulator's token endpoint
and scope checks (okta_simulator.oauth), in process with a controlled clock; and the pure-Python RS256 checked
against the openssl command, byte for byte."""
from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import httpx
import pytest

from okta_bridge.events import parse_event
from okta_bridge.jose import (b64url, decode_unverified, encode_jwt, generate_rsa_key, load_private_key, thumbprint,
                              verify_jwt)
from okta_bridge.okta_auth import ServiceAppAuth, SswsAuth, build_auth, okta_client_from_settings, scopes_for
from okta_bridge.okta_client import OktaAuthError, OktaClient
from okta_bridge.settings import OktaSettings
from okta_simulator import Settings, create_app
from queue_poller.handlers import Poller, PollerConfig
from tests.unit.fakes import FakeLogSource, FakeOutbox, FakePollerState

ORG = "https://acme.okta.com"
TOKEN_URL = f"{ORG}/oauth2/v1/token"
CLIENT = "0oaservice0000000001"
ALL = ["okta.logs.read", "okta.users.read", "okta.apps.read", "okta.groups.read", "okta.apps.manage"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key():
    return generate_rsa_key(2048, kid="bridge-1")


@pytest.fixture(scope="module")
def dpop_key():
    return generate_rsa_key(2048)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def simulator(clock: Clock, key, *, scopes=ALL, dpop: bool = False):
    client = {"client_id": CLIENT, "jwks": {"keys": [key.public_jwk()]}, "scopes": scopes, "dpop": dpop}
    return create_app(Settings(org_url=ORG, oauth_clients=[client]), clock)


def http_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORG)


def okta(app, clock, key, scopes=tuple(ALL[:4]), dpop_key=None) -> tuple[OktaClient, ServiceAppAuth]:
    auth = ServiceAppAuth(ORG, CLIENT, key, scopes, dpop_key=dpop_key, clock=clock)
    return OktaClient(ORG, auth=auth, http=http_for(app)), auth


async def seeded(app) -> tuple[str, str]:
    async with http_for(app) as admin:
        user = (await admin.post("/_admin/users", json={"profile": {"login": "a@example.com", "firstName": "A",
                                                                    "lastName": "B", "email": "a@example.com"}})).json()
        app_id = (await admin.post("/_admin/apps", json={"label": "Jira"})).json()["id"]
        await admin.post(f"/_admin/apps/{app_id}/users", json={"userId": user["id"]})
    return user["id"], app_id


def assertion(key, **claims) -> str:
    base = {"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "iat": 1_800_000_000, "exp": 1_800_000_300,
            "jti": "j-1"}
    return encode_jwt({**base, **claims}, key)


async def token_request(app, client_assertion: str, scope: str = "okta.users.read", **headers) -> httpx.Response:
    async with http_for(app) as http:
        return await http.post("/oauth2/v1/token", headers=headers, data={
            "grant_type": "client_credentials", "scope": scope, "client_assertion": client_assertion,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})


# ------------------------------------------------------------------ the client

async def test_a_token_is_cached_for_its_hour_and_renewed_before_it_ends(clock, key) -> None:
    app = simulator(clock, key)
    user_id, _ = await seeded(app)
    client, auth = okta(app, clock, key)
    for _ in range(3):
        assert (await client.get_user(user_id))["id"] == user_id
    assert auth.tokens_issued == 1 == app.state.sim.oauth.issued_count
    clock.now += 3600 - 301  # still more than the renewal margin (300 s) left
    await client.get_user(user_id)
    assert auth.tokens_issued == 1
    clock.now += 2  # within five minutes of the end: renewed before Okta would refuse it
    await client.get_user(user_id)
    assert auth.tokens_issued == 2
    issued = app.state.sim.oauth.tokens
    assert all(t.scopes == frozenset(ALL[:4]) for t in issued.values())


async def test_renewed_tokens_are_masked_and_only_the_last_two_are_kept_for_masking(clock, key) -> None:
    """A process renews its token every hour for months: the masking list holds the current token and the one it
    replaced (a request may still fail with it), not every token ever issued."""
    from okta_bridge import redact

    app = simulator(clock, key)
    user_id, _ = await seeded(app)
    client, auth = okta(app, clock, key)
    seen = []
    for _ in range(4):
        await client.get_user(user_id)
        seen.append(auth._token)
        clock.now += 3600
    assert len(set(seen)) == 4
    assert all(redact.mask_secrets(f"x {t} y") == "x *** y" for t in seen[-2:])
    assert all(t not in redact._SECRETS for t in seen[:-2])


async def test_a_token_revoked_early_is_replaced_and_the_request_sent_again(clock, key) -> None:
    app = simulator(clock, key)
    user_id, _ = await seeded(app)
    client, auth = okta(app, clock, key)
    await client.get_user(user_id)
    app.state.sim.oauth.tokens.clear()  # an admin revoked it
    assert (await client.get_user(user_id))["id"] == user_id
    assert auth.tokens_issued == 2


async def test_a_missing_scope_is_a_clear_auth_error(clock, key) -> None:
    app = simulator(clock, key)
    user_id, _ = await seeded(app)
    client, auth = okta(app, clock, key, scopes=scopes_for("poller"))
    with pytest.raises(OktaAuthError) as caught:
        await client.get_user(user_id)
    assert caught.value.status == 403
    message = str(caught.value)
    assert "E0000006" in message and "lacks the scope okta.users.read" in message
    assert auth.secrets() and auth.secrets()[0] not in message


async def test_a_scope_not_granted_to_the_app_is_refused_at_the_token_endpoint(clock, key) -> None:
    app = simulator(clock, key, scopes=ALL[:4])  # the app was not granted okta.apps.manage
    _, app_id = await seeded(app)
    client, _ = okta(app, clock, key, scopes=scopes_for("translator", accept_user_updates=True))
    with pytest.raises(OktaAuthError, match=r"-> 400: invalid_scope: The following scopes are not allowed: "
                                            r"okta.apps.manage"):
        await client.get(f"/api/v1/apps/{app_id}/users")


async def test_writes_need_okta_apps_manage_and_are_logged_with_the_app_as_actor(clock, key) -> None:
    app = simulator(clock, key)
    user_id, app_id = await seeded(app)
    reader, _ = okta(app, clock, key, scopes=scopes_for("translator"))
    with pytest.raises(OktaAuthError, match="lacks the scope okta.apps.manage"):
        await reader.update_app_user_profile(app_id, user_id, {"costCenter": "7"})
    writer, _ = okta(app, clock, key, scopes=scopes_for("translator", accept_user_updates=True))
    await writer.update_app_user_profile(app_id, user_id, {"costCenter": "7"})
    logs, _ = okta(app, clock, key, scopes=scopes_for("poller"))
    events = (await logs.get("/api/v1/logs", {"since": "2020-01-01T00:00:00Z"})).body
    [raw] = [e for e in events if e["eventType"] == "application.user_membership.update"]
    assert raw["actor"]["id"] == CLIENT and raw["actor"]["type"] == "PublicClientApp"
    assert "requestApiTokenId" not in raw["transaction"]["detail"]
    event = parse_event(ORG, raw)
    assert event.actor_id == CLIENT and event.request_api_token_id is None
    # the poller recognises its own write by the client id (as it does an SSWS token's by requestApiTokenId)
    cfg = PollerConfig(org=ORG, app_ids=(app_id,), own_token_id=None, own_client_id=CLIENT, start_from=None,
                       max_cursor_age=timedelta(days=1), page_limit=100, idle_interval_s=5, min_interval_s=1)
    store = FakePollerState(None, None)
    poller = Poller(cfg, FakeLogSource(), store, FakeOutbox(store.log))
    assert poller._own_write(event)
    other = PollerConfig(**{**cfg.__dict__, "own_client_id": "0oaotherapp000000001"})
    assert not Poller(other, FakeLogSource(), store, FakeOutbox(store.log))._own_write(event)


async def test_dpop_binds_the_token_after_the_nonce_exchange(clock, key, dpop_key) -> None:
    app = simulator(clock, key, dpop=True)
    user_id, _ = await seeded(app)
    seen: list[httpx.Request] = []
    transport = httpx.ASGITransport(app=app)

    async def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await transport.handle_async_request(request)

    auth = ServiceAppAuth(ORG, CLIENT, key, ALL[:4], dpop_key=dpop_key, clock=clock)
    client = OktaClient(ORG, auth=auth, http=httpx.AsyncClient(transport=httpx.MockTransport(spy)))
    assert (await client.get_user(user_id))["id"] == user_id
    token_requests = [r for r in seen if r.url.path == "/oauth2/v1/token"]
    assert len(token_requests) == 2  # the first is answered use_dpop_nonce, the second carries the nonce
    first, second = (decode_unverified(r.headers["dpop"])[1] for r in token_requests)
    assert "nonce" not in first and second["nonce"] == app.state.sim.oauth.nonce
    api = seen[-1]
    assert api.headers["authorization"].startswith("DPoP ")
    header, proof = decode_unverified(api.headers["dpop"])
    assert header["typ"] == "dpop+jwt" and "d" not in header["jwk"]
    assert (proof["htm"], proof["htu"]) == ("GET", f"{ORG}/api/v1/users/{user_id}")
    token = api.headers["authorization"].split(" ", 1)[1]
    [issued] = app.state.sim.oauth.tokens.values()
    assert issued.jkt == thumbprint(dpop_key.public_jwk())
    # a stolen DPoP-bound token is useless without the key: as a Bearer token, or with a proof of another key
    async with http_for(app) as thief:
        assert (await thief.get(f"/api/v1/users/{user_id}", headers={"Authorization": f"Bearer {token}"})
                ).status_code == 401
        other = ServiceAppAuth(ORG, CLIENT, key, ALL[:4], dpop_key=generate_rsa_key(2048), clock=clock)
        forged = other._proof("GET", f"{ORG}/api/v1/users/{user_id}", None, b64url(__import__("hashlib").sha256(
            token.encode()).digest()))
        answer = await thief.get(f"/api/v1/users/{user_id}", headers={"Authorization": f"DPoP {token}",
                                                                       "DPoP": forged})
        assert answer.status_code == 401 and "invalid_dpop_proof" in answer.headers["www-authenticate"]


# ------------------------------------------------------------------ the token endpoint's checks

async def test_the_token_endpoint_checks_the_client_assertion(clock, key) -> None:
    app = simulator(clock, key)
    good = await token_request(app, assertion(key))
    assert good.status_code == 200 and good.json()["token_type"] == "Bearer" and good.json()["expires_in"] == 3600
    cases = {
        "already been used": assertion(key),  # the same jti again
        "audience claim": assertion(key, jti="j-2", aud=f"{ORG}/oauth2/default/v1/token"),
        "expired": assertion(key, jti="j-3", exp=1_799_999_999),
        "too far into the future": assertion(key, jti="j-4", exp=1_800_007_200),
        "signature is invalid": assertion(generate_rsa_key(2048, kid="bridge-1"), jti="j-5"),
        "registered client_id": assertion(key, jti="j-6", iss="0oaunknown", sub="0oaunknown"),
    }
    for why, jwt in cases.items():
        answer = await token_request(app, jwt)
        assert answer.status_code == 401, why
        assert answer.json()["error"] == "invalid_client" and why in answer.json()["error_description"], why
    missing = await token_request(app, assertion(key, jti="j-7"), scope="okta.users.manage")
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_scope"


async def test_missing_scope_answer_has_oktas_shape(clock, key) -> None:
    app = simulator(clock, key)
    token = (await token_request(app, assertion(key), scope="okta.logs.read")).json()["access_token"]
    async with http_for(app) as http:
        answer = await http.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"})
        assert (await http.get("/api/v1/logs", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    assert answer.status_code == 403 and answer.json()["errorCode"] == "E0000006"
    challenge = answer.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="okta.users.read"' in challenge
    clock.now += 3600
    async with http_for(app) as http:  # an hour later the token is gone
        assert (await http.get("/api/v1/logs", headers={"Authorization": f"Bearer {token}"})).status_code == 401


# ------------------------------------------------------------------ settings and keys

def test_settings_choose_the_auth_and_name_what_is_missing(monkeypatch, key, tmp_path) -> None:
    monkeypatch.setenv("OKTA_ORG_URL", ORG)
    for var in ("OKTA_API_TOKEN", "OKTA_CLIENT_ID", "OKTA_PRIVATE_KEY", "OKTA_PRIVATE_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="no Okta credentials: set OKTA_CLIENT_ID"):
        build_auth(OktaSettings(), scopes_for("poller"))
    monkeypatch.setenv("OKTA_API_TOKEN", "ssws-value")
    monkeypatch.setenv("OKTA_API_TOKEN_ID", "00Tbridge")
    ssws = build_auth(OktaSettings(), scopes_for("poller"))
    assert isinstance(ssws, SswsAuth) and ssws.own_ids() == ("00Tbridge", None)
    monkeypatch.setenv("OKTA_CLIENT_ID", CLIENT)
    with pytest.raises(ValueError, match="both OKTA_API_TOKEN and OKTA_CLIENT_ID"):
        build_auth(OktaSettings(), scopes_for("poller"))
    monkeypatch.delenv("OKTA_API_TOKEN")
    with pytest.raises(ValueError, match="OKTA_PRIVATE_KEY or OKTA_PRIVATE_KEY_FILE"):
        build_auth(OktaSettings(), scopes_for("poller"))
    monkeypatch.setenv("OKTA_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----")
    with pytest.raises(ValueError, match="OKTA_PRIVATE_KEY: the PEM private key cannot be read") as caught:
        build_auth(OktaSettings(), scopes_for("poller"))
    assert "not base64!" not in str(caught.value)
    monkeypatch.delenv("OKTA_PRIVATE_KEY")
    (tmp_path / "key.json").write_text(json.dumps(key.private_jwk()))
    monkeypatch.setenv("OKTA_PRIVATE_KEY_FILE", str(tmp_path / "key.json"))
    monkeypatch.setenv("OKTA_KEY_ID", "kid-7")
    client = okta_client_from_settings(OktaSettings(), scopes_for("translator"))
    assert isinstance(client.auth, ServiceAppAuth) and client.auth.own_ids() == (None, CLIENT)
    assert client.auth.scopes == ("okta.users.read", "okta.apps.read", "okta.groups.read")
    assert client.auth.token_url == TOKEN_URL and not client.auth.dpop
    assert "kid-7" in repr(client.auth._key) and key.private_jwk()["d"] not in repr(client.auth._key)
    monkeypatch.setenv("OKTA_SCOPES", "okta.logs.read okta.users.read")
    assert build_auth(OktaSettings(), scopes_for("poller")).scopes == ("okta.logs.read", "okta.users.read")


def test_empty_settings_count_as_unset_as_compose_passes_them(monkeypatch, key) -> None:
    """compose sets ``OKTA_CLIENT_ID: ${OKTA_CLIENT_ID:-}`` and the like: empty on a host that uses an SSWS token,
    which must mean no service app (and ``OKTA_DPOP=``, ``OKTA_KEY_ID=``: the defaults), not a client id of ''."""
    monkeypatch.setenv("OKTA_ORG_URL", ORG)
    for var in ("OKTA_CLIENT_ID", "OKTA_PRIVATE_KEY_FILE", "OKTA_KEY_ID", "OKTA_SCOPES", "OKTA_DPOP",
                "OKTA_PRIVATE_KEY", "OKTA_API_TOKEN_ID"):
        monkeypatch.setenv(var, "")
    monkeypatch.setenv("OKTA_API_TOKEN", "ssws-value")
    settings = OktaSettings()
    assert (settings.client_id, settings.private_key_file, settings.key_id, settings.scopes, settings.dpop) == \
        (None, None, None, None, False)
    assert isinstance(build_auth(settings, scopes_for("poller")), SswsAuth)
    monkeypatch.setenv("OKTA_API_TOKEN", "")  # the token secret an OAuth deployment leaves empty
    monkeypatch.setenv("OKTA_CLIENT_ID", CLIENT)
    monkeypatch.setenv("OKTA_PRIVATE_KEY", json.dumps(key.private_jwk()))
    auth = build_auth(OktaSettings(), scopes_for("poller"))
    assert isinstance(auth, ServiceAppAuth) and not auth.dpop


@pytest.mark.parametrize("form", ["pkcs8", "pkcs1"])
def test_rs256_matches_openssl_byte_for_byte(tmp_path, form: str) -> None:
    """RSASSA-PKCS1-v1_5 is deterministic: our signature must be openssl's, for a key openssl made."""
    path = tmp_path / "key.pem"
    if form == "pkcs8":
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                        str(path)], check=True, capture_output=True)
    else:
        subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(path), "2048"], check=True,
                       capture_output=True)
    key = load_private_key(path.read_text(), kid="k")
    token = encode_jwt({"sub": "x", "exp": 4_000_000_000}, key)
    signing_input = token.rsplit(".", 1)[0]
    (tmp_path / "input").write_bytes(signing_input.encode())
    theirs = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(path), str(tmp_path / "input")],
                            check=True, capture_output=True).stdout
    assert token.rsplit(".", 1)[1] == b64url(theirs)
    assert verify_jwt(token, load_private_key(path.read_text()))["sub"] == "x"


def test_an_ec_key_is_refused_clearly(tmp_path) -> None:
    path = tmp_path / "ec.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                    str(path)], check=True, capture_output=True)
    with pytest.raises(ValueError, match="only RSA keys are supported"):
        load_private_key(path.read_text())


async def test_an_invalid_dpop_proof_is_not_answered_with_a_token_request_per_call(clock, key, dpop_key) -> None:
    app = simulator(clock, key, dpop=True)
    user_id, _ = await seeded(app)
    client, auth = okta(app, clock, key, dpop_key=dpop_key)
    await client.get_user(user_id)
    real = auth._proof
    auth._proof = lambda method, url, nonce, ath=None: real(method, url + "/elsewhere", nonce, ath)  # wrong htu
    with pytest.raises(OktaAuthError) as caught:
        await client.get_user(user_id)
    assert caught.value.status == 401 and auth.tokens_issued == 1
