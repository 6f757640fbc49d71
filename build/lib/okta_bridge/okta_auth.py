"""How the bridge authenticates to Okta: an SSWS API token, or (recommended by Okta for service integrations) an
OAuth 2.0 service app.

**OAuth 2.0 service app** (:class:`ServiceAppAuth`): the client-credentials grant at the org authorization server
(``{org}/oauth2/v1/token``) with ``private_key_jwt`` client authentication: a JWT signed with the app's private key
(``iss`` = ``sub`` = client id, ``aud`` = the token URL, a fresh ``jti``, five minutes of life) asks for scoped access
tokens. Okta's tokens live one hour; one is kept per process and renewed ``renew_before_s`` before it expires (and
at once when Okta answers 401 ``invalid_token``, e.g. after a revocation). With DPoP turned on for the app, every
token request and every API request carries a DPoP proof (RFC 9449) signed by the process's DPoP key (``jwk`` in the
header; ``htm``, ``htu``, ``iat``, ``jti``, and ``ath`` = the token's hash on API requests); Okta answers the first
token request 400 ``use_dpop_nonce`` with a ``DPoP-Nonce`` header, which the next proof carries.

Why not an SSWS token: it carries its creator's whole admin role, expires after 30 days unused, and dies with its
creator's account; a service app's token carries only the scopes asked for, and the app's admin role can be a custom
role limited to the bridged apps and their groups (README, *Least privilege in Okta*).

The bridge's own writes are recognised in the System Log by who caused them: an SSWS token by
``transaction.detail.requestApiTokenId`` (``OKTA_API_TOKEN_ID``), a service app by ``actor.id`` = its client id
(:meth:`OktaAuth.own_ids`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import httpx

from okta_bridge.logs import register_secret
from okta_bridge.redact import forget_secret
from okta_bridge.jose import JoseError, RsaKey, b64url, encode_jwt, generate_rsa_key, load_private_key

if TYPE_CHECKING:
    from okta_bridge.okta_client import OktaClient
    from okta_bridge.settings import OktaSettings

__all__ = ["OktaAuth", "ServiceAppAuth", "SswsAuth", "build_auth", "okta_client_from_settings", "scopes_for"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
READ_SCOPES = {
    "poller": ("okta.logs.read",),
    "translator": ("okta.users.read", "okta.apps.read", "okta.groups.read"),
    "drift": ("okta.users.read", "okta.apps.read", "okta.groups.read"),
}


def scopes_for(service: str, accept_user_updates: bool = False) -> tuple[str, ...]:
    """The least scopes a service asks for: ``okta.apps.manage`` only for the translator with a connector that has
    ``accept_user_updates`` (it writes app-user profiles)."""
    scopes = READ_SCOPES[service]
    return scopes + ("okta.apps.manage",) if accept_user_updates and service == "translator" else scopes


class OktaAuth(Protocol):
    async def headers(self, method: str, url: str, http: httpx.AsyncClient) -> dict[str, str]:
        """The authentication headers of one API request."""

    def retry(self, response: httpx.Response) -> bool:
        """After a 401: True when the same request is worth sending once more (a new nonce, a renewed token)."""

    def secrets(self) -> list[str]:
        """Values that must never appear in an error message."""

    def own_ids(self) -> tuple[str | None, str | None]:
        """(the SSWS token's id, the service app's client id): how the System Log names the bridge's own writes."""


class SswsAuth:
    def __init__(self, token: str, token_id: str | None = None) -> None:
        self._token, self._token_id = token, token_id

    async def headers(self, method: str, url: str, http: httpx.AsyncClient) -> dict[str, str]:
        return {"Authorization": f"SSWS {self._token}"}

    def retry(self, response: httpx.Response) -> bool:
        return False

    def secrets(self) -> list[str]:
        return [self._token] if self._token else []

    def own_ids(self) -> tuple[str | None, str | None]:
        return self._token_id, None


class ServiceAppAuth:
    def __init__(self, org_url: str, client_id: str, key: RsaKey, scopes: tuple[str, ...] | list[str], *,
                 dpop_key: RsaKey | None = None, renew_before_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.org_url = org_url.rstrip("/")
        self.token_url = f"{self.org_url}/oauth2/v1/token"
        self.client_id, self.scopes = client_id, tuple(scopes)
        self._key, self._dpop_key = key, dpop_key
        self._renew_before, self._clock = renew_before_s, clock
        self._token: str | None = None
        self._replaced: str | None = None  # the token before this one
        self._token_type = "Bearer"
        self._expires_at = 0.0
        self._nonce: str | None = None  # the authorization server's DPoP nonce
        self._api_nonce: str | None = None  # the resource server's, if it asks for one
        self._lock = asyncio.Lock()
        self.tokens_issued = 0  # how many access tokens this process obtained (tests, metrics)

    @property
    def dpop(self) -> bool:
        return self._dpop_key is not None

    async def headers(self, method: str, url: str, http: httpx.AsyncClient) -> dict[str, str]:
        token = await self._access_token(http)
        if not self.dpop:
            return {"Authorization": f"Bearer {token}"}
        ath = b64url(hashlib.sha256(token.encode()).digest())
        return {"Authorization": f"DPoP {token}", "DPoP": self._proof(method, url, self._api_nonce, ath)}

    def retry(self, response: httpx.Response) -> bool:
        challenge = response.headers.get("www-authenticate", "")
        if self.dpop and "use_dpop_nonce" in challenge and response.headers.get("dpop-nonce"):
            self._api_nonce = response.headers["dpop-nonce"]
            return True
        if "invalid_dpop_proof" in challenge:  # a new token would not help (e.g. this host's clock is off)
            return False
        self._token, self._expires_at = None, 0.0  # revoked or expired early: obtain a new one, once
        return True

    def secrets(self) -> list[str]:
        return [self._token] if self._token else []

    def own_ids(self) -> tuple[str | None, str | None]:
        return None, self.client_id

    async def _access_token(self, http: httpx.AsyncClient) -> str:
        async with self._lock:  # one token request at a time; the others wait for its token
            if self._token is None or self._clock() >= self._expires_at - self._renew_before:
                await self._obtain(http)
            assert self._token is not None
            return self._token

    async def _obtain(self, http: httpx.AsyncClient) -> None:
        from okta_bridge.okta_client import OktaAuthError, OktaTransientError

        for _ in range(2):  # the second time with the nonce Okta asked for
            now = int(self._clock())
            assertion = encode_jwt({"iss": self.client_id, "sub": self.client_id, "aud": self.token_url,
                                    "iat": now, "exp": now + 300, "jti": secrets.token_urlsafe(24)}, self._key)
            form = {"grant_type": "client_credentials", "scope": " ".join(self.scopes),
                    "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
            headers = {"Accept": "application/json"}
            if self.dpop:
                headers["DPoP"] = self._proof("POST", self.token_url, self._nonce)
            try:
                resp = await http.post(self.token_url, data=form, headers=headers)
            except httpx.HTTPError as exc:
                raise OktaTransientError(f"okta token request: {type(exc).__name__}") from None
            try:
                body = resp.json()
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            if resp.status_code == 400 and body.get("error") == "use_dpop_nonce" and resp.headers.get("dpop-nonce"):
                self._nonce = resp.headers["dpop-nonce"]
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                raise OktaTransientError(f"okta token request -> {resp.status_code}", resp.status_code)
            if resp.status_code != 200 or not isinstance(body.get("access_token"), str):
                error = _clean(body.get("error")) or "no access token"
                why = _clean(body.get("error_description"))
                raise OktaAuthError(f"okta token request for client {self.client_id} (scopes {' '.join(self.scopes)})"
                                    f" -> {resp.status_code}: {error}{': ' + why if why else ''}", resp.status_code)
            # masked in every log line, like the SSWS token; the token before the one replaced is forgotten (a
            # request may still fail with the one replaced), so an hourly renewal does not grow the list for ever
            forget_secret(self._replaced)
            self._replaced, self._token = self._token, body["access_token"]
            register_secret(self._token)
            self._token_type = str(body.get("token_type") or "Bearer")
            expires_in = body.get("expires_in")
            self._expires_at = self._clock() + (float(expires_in) if isinstance(expires_in, (int, float)) else 3600.0)
            if resp.headers.get("dpop-nonce"):
                self._nonce = resp.headers["dpop-nonce"]
            self.tokens_issued += 1
            return
        raise OktaAuthError("okta token request: the DPoP nonce was refused twice", 400)

    def _proof(self, method: str, url: str, nonce: str | None, ath: str | None = None) -> str:
        assert self._dpop_key is not None
        htu = str(httpx.URL(url).copy_with(query=None, fragment=None))
        claims = {"htm": method, "htu": htu, "iat": int(self._clock()), "jti": secrets.token_urlsafe(24)}
        if nonce:
            claims["nonce"] = nonce
        if ath:
            claims["ath"] = ath
        jwk = {k: v for k, v in self._dpop_key.public_jwk().items() if k != "kid"}
        return encode_jwt(claims, self._dpop_key, {"typ": "dpop+jwt", "jwk": jwk})


def _clean(value: object) -> str:
    """An OAuth error field as one short line of plain text (Okta's, but never trusted to be short)."""
    return re.sub(r"[^\x20-\x7e]", " ", value)[:200] if isinstance(value, str) else ""


def _private_key(settings: "OktaSettings") -> RsaKey:
    if settings.private_key_file:
        try:
            text = Path(settings.private_key_file).read_text()
        except OSError as exc:
            raise ValueError(f"OKTA_PRIVATE_KEY_FILE {settings.private_key_file}: cannot read ({exc.strerror})") \
                from None
    else:
        text = settings.private_key.get_secret_value()
    if not text.strip():
        raise ValueError("OKTA_CLIENT_ID is set: OKTA_PRIVATE_KEY or OKTA_PRIVATE_KEY_FILE must hold the service "
                         "app's private key")
    try:
        return load_private_key(text, settings.key_id)
    except JoseError as exc:
        raise ValueError(f"OKTA_PRIVATE_KEY: {exc}") from None


def build_auth(settings: "OktaSettings", scopes: tuple[str, ...]) -> OktaAuth:
    """The authentication the settings describe; a missing or contradictory credential fails here, at start, with
    the names of the settings (never their values)."""
    token = settings.api_token.get_secret_value()
    if settings.client_id:
        if token:
            raise ValueError("both OKTA_API_TOKEN and OKTA_CLIENT_ID are set: choose one way to authenticate")
        wanted = tuple(settings.scopes.split()) if settings.scopes else scopes
        return ServiceAppAuth(settings.org_url, settings.client_id, _private_key(settings), wanted,
                              dpop_key=generate_rsa_key() if settings.dpop else None)
    if not token:
        raise ValueError("no Okta credentials: set OKTA_CLIENT_ID and OKTA_PRIVATE_KEY(_FILE) (an OAuth 2.0 service "
                         "app, recommended) or OKTA_API_TOKEN (SSWS)")
    return SswsAuth(token, settings.api_token_id)


def okta_client_from_settings(settings: "OktaSettings", scopes: tuple[str, ...], **kwargs) -> "OktaClient":
    """An :class:`~okta_bridge.okta_client.OktaClient` with the settings' URL, credentials, TLS and timeout."""
    from okta_bridge.okta_client import OktaClient

    return OktaClient(settings.org_url, auth=build_auth(settings, scopes), timeout_s=settings.request_timeout_s,
                      tls=settings.tls, max_response_bytes=settings.max_response_mb * 1024 * 1024, **kwargs)
