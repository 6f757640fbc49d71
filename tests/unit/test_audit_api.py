"""The audit API's access: a token of API_TOKENS (read right) and an allowed Host; health apart, without a token;
the OpenAPI document committed in docs/ and not served by default."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from audit_recorder.api import create_api, create_health, openapi_document
from okta_bridge.apiauth import ApiAuthSettings, ApiTokens, hash_token

ROOT = Path(__file__).resolve().parents[2]
READER = "reader-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789abcdef"


class FakeStore:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    async def page(self, filters, since, until, limit, after):
        self.calls.append(filters)
        return [{"step": "applied", "okta_user_id": filters.get("okta_user_id")}], None


def tokens() -> ApiTokens:
    return ApiTokens.parse(f"alice:reader:{hash_token(READER)}, console:operator:{OPERATOR}")


async def get(app, path: str, token: str | None = None, host: str = "127.0.0.1:8070") -> httpx.Response:
    headers = {"Host": host, **({"Authorization": f"Bearer {token}"} if token else {})}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8070") as http:
        return await http.get(path, headers=headers)


async def test_audit_needs_a_token_with_the_read_right():
    store = FakeStore()
    app = create_api(store, tokens(), ["127.0.0.1", "localhost"])
    missing = await get(app, "/audit")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert (await get(app, "/audit", "not-a-token-0123456789")).status_code == 401
    assert (await get(app, "/audit", hash_token(READER))).status_code == 401  # the hash is not the token
    assert store.calls == []  # nothing was read for a refused caller
    ok = await get(app, "/audit?user=00u1234567890abcdefg", READER)
    assert ok.status_code == 200 and ok.json()["items"][0]["okta_user_id"] == "00u1234567890abcdefg"
    assert (await get(app, "/audit", OPERATOR)).status_code == 200  # an operator may read


async def test_no_tokens_configured_refuses_everyone():
    app = create_api(FakeStore(), ApiTokens.parse(""), ["127.0.0.1"])
    response = await get(app, "/audit", READER)
    assert response.status_code == 401 and "API_TOKENS" in response.json()["detail"]


async def test_a_host_header_not_allowed_is_refused_before_the_token_is_looked_at():
    store = FakeStore()
    app = create_api(store, tokens(), ["audit.internal"])
    assert (await get(app, "/audit", READER, host="evil.example")).status_code == 400
    assert (await get(app, "/audit", READER, host="audit.internal:8070")).status_code == 200
    assert len(store.calls) == 1


async def test_health_is_apart_and_without_a_token_and_the_api_serves_no_health_nor_openapi():
    async def health():
        return True, {"batches_written": 3}

    probe = create_health(health)
    answer = await get(probe, "/healthz", host="10.0.0.7:8071")
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "batches_written": 3}
    api = create_api(FakeStore(), tokens(), ["127.0.0.1"])
    for path in ("/healthz", "/openapi.json", "/docs"):
        assert (await get(api, path, READER)).status_code == 404, path
    served = create_api(FakeStore(), tokens(), ["127.0.0.1"], serve_openapi=True)
    assert (await get(served, "/openapi.json")).json()["paths"].keys() == {"/audit"}


def test_the_committed_openapi_document_is_current():
    """Regenerate with: PYTHONPATH=services:shared python -m audit_recorder.api > docs/audit-api.openapi.json"""
    committed = json.loads((ROOT / "docs" / "audit-api.openapi.json").read_text())
    assert committed == json.loads(json.dumps(openapi_document())), "docs/audit-api.openapi.json is stale"
    assert committed["paths"]["/audit"]["get"]["security"] == [{"HTTPBearer": []}]


@pytest.mark.parametrize("value, message", [
    ("alice:superuser:" + "x" * 20, "ROLE one of reader, operator, viewer, admin"),
    (READER, "expected NAME:ROLE:TOKEN"),  # a bare token: not echoed
    ("alice:reader:short", "shorter than 16"),
    ("alice:reader:sha256:abc", "64 lower-case hex"),
    (f"alice:reader:{READER},alice:operator:{OPERATOR}", "used twice"),
    ("no colons here", "expected NAME:ROLE:TOKEN"),
])
def test_a_bad_tokens_setting_names_the_entry_never_the_token(value, message):
    with pytest.raises(ValueError, match=message) as caught:
        ApiTokens.parse(value)
    assert READER not in str(caught.value) and OPERATOR not in str(caught.value)


def test_settings_names(monkeypatch):
    monkeypatch.setenv("API_TOKENS", f"alice:reader:{READER}")
    monkeypatch.setenv("API_ALLOWED_HOSTS", "Audit.Internal, localhost")
    settings = ApiAuthSettings()
    assert settings.hosts() == ["audit.internal", "localhost"]
    assert settings.parsed_tokens().check(READER).name == "alice"
    assert READER not in repr(settings)
