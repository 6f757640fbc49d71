"""Who is using the console, and what they may do.

**Sessions** live in MongoDB (``console_sessions``, TTL on ``expires_at``): the browser holds only a random session
id in an HttpOnly, SameSite=Lax cookie (Secure when the console is served over https); the database holds its SHA-256,
the person's name and role, and the session's CSRF token. Replicas share them; signing out deletes the record.

**Sign-in with Okta**: OIDC authorization code with PKCE (S256) against ``CONSOLE_OIDC_ISSUER`` (Okta's org
authorization server by default). A sign-in keeps ``state``, ``nonce`` and the code verifier server-side
(``console_logins``, ten minutes, taken once) and ``state`` in a cookie of the browser that started it, so a callback
is refused when it was not started in this browser (a forged callback) or was already used (a replay). The ID token
is checked as OIDC Core says: RS256 signature by a key of the issuer's JWKS, ``iss``, ``aud``, ``exp``, ``iat`` and
the ``nonce``. The role comes from the groups claim: a member of a ``CONSOLE_ADMIN_GROUPS`` group is an admin, of a
``CONSOLE_VIEWER_GROUPS`` group a viewer, anyone else is refused.

**Static tokens** (``API_TOKENS``, the audit API's model: ``reader``/``viewer`` read, ``operator``/``admin`` act):
as ``Authorization: Bearer`` on any request (scripts; no cookie, so no CSRF), or typed into the sign-in page once
to open a session (the form is protected by a double-submit cookie).

**CSRF**: every form post carries the session's token, compared in constant time; a post whose ``Origin`` is not the
console's own is refused too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from okta_bridge.apiauth import ApiToken, ApiTokens

__all__ = ["Oidc", "OidcError", "Principal", "RateLimit", "Sessions", "pkce_pair", "principal_of_token"]

LOGIN_TTL_S = 600


@dataclass(frozen=True)
class Principal:
    name: str  # shown in the page and recorded as the audit's actor: a login, or a token's name
    role: str  # admin | viewer
    via: str  # okta | token
    csrf: str = ""  # the session's (empty for a bearer token: no cookie, nothing to forge)

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        return f"{self.name} ({'Okta sign-in' if self.via == 'okta' else 'token'})"


def principal_of_token(token: ApiToken, csrf: str = "") -> Principal:
    return Principal(token.name, "admin" if token.grants("operate") else "viewer", "token", csrf)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) as RFC 7636 says."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Sessions:
    def __init__(self, db: AsyncDatabase, ttl_s: int) -> None:
        self._db, self._ttl = db, ttl_s

    async def ensure_indexes(self) -> None:
        await self._db.console_sessions.create_index("expires_at", expireAfterSeconds=0)
        await self._db.console_logins.create_index("expires_at", expireAfterSeconds=0)
        await self._db.console_rate.create_index("expires_at", expireAfterSeconds=0)

    async def open(self, name: str, role: str, via: str, token_digest: str | None = None) -> tuple[str, Principal]:
        """A new session (a new id at every sign-in). ``token_digest``: the token's SHA-256 for a session opened with
        a token (the setting's own form: it grants nothing), so the token is checked again at every request."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        await self._db.console_sessions.insert_one({"_id": _digest(sid), "name": name, "role": role, "via": via,
                                                    "token": token_digest, "csrf": csrf, "created": now,
                                                    "expires_at": now + timedelta(seconds=self._ttl)})
        return sid, Principal(name, role, via, csrf)

    async def get(self, sid: str | None, tokens: "ApiTokens | None" = None) -> Principal | None:
        """The session's principal; for a token's session, only while ``tokens`` still holds that token (its role
        as it is now)."""
        if not sid or len(sid) > 100:
            return None
        doc = await self._db.console_sessions.find_one({"_id": _digest(sid)})
        if doc is None or _utc(doc["expires_at"]) <= datetime.now(UTC):
            return None
        role = doc["role"]
        if doc["via"] == "token":
            token = tokens.current(doc["name"], doc.get("token") or "") if tokens is not None else None
            if token is None:
                return None
            role = "admin" if token.grants("operate") else "viewer"
        return Principal(doc["name"], role, doc["via"], doc["csrf"])

    async def close(self, sid: str | None) -> None:
        if sid and len(sid) <= 100:
            await self._db.console_sessions.delete_one({"_id": _digest(sid)})

    async def start_login(self, state: str, verifier: str, nonce: str, next_: str) -> None:
        await self._db.console_logins.insert_one({
            "_id": _digest(state), "verifier": verifier, "nonce": nonce, "next": next_,
            "expires_at": datetime.now(UTC) + timedelta(seconds=LOGIN_TTL_S)})

    async def take_login(self, state: str) -> dict[str, Any] | None:
        """The sign-in started with ``state``, once: a second callback with it finds nothing."""
        doc = await self._db.console_logins.find_one_and_delete({"_id": _digest(state)})
        if doc is None or _utc(doc["expires_at"]) <= datetime.now(UTC):
            return None
        return doc


class RateLimit:
    """At most ``per_minute`` previews and provisions a minute across every replica: one counter document per
    minute in MongoDB (one round trip per action)."""

    def __init__(self, db: AsyncDatabase, per_minute: int) -> None:
        self._db, self._limit = db, per_minute

    async def take(self) -> int | None:
        """None when allowed; else the seconds until the next minute."""
        now = time.time()
        window = int(now // 60)
        doc = await self._db.console_rate.find_one_and_update(
            {"_id": f"actions:{window}"},
            {"$inc": {"n": 1}, "$setOnInsert": {"expires_at": datetime.fromtimestamp((window + 2) * 60, UTC)}},
            upsert=True, return_document=ReturnDocument.AFTER)
        if doc["n"] <= self._limit:
            return None
        return int((window + 1) * 60 - now) + 1


class OidcError(Exception):
    """A sign-in that cannot complete; the message is safe to show (no token, no code)."""


class Oidc:
    """The console as an OIDC client (confidential web app, ``client_secret_basic``, PKCE S256)."""

    def __init__(self, issuer: str, client_id: str, client_secret: str, redirect_uri: str, groups_claim: str,
                 http: httpx.AsyncClient, scopes: str = "openid profile email groups") -> None:
        self.issuer, self.client_id, self._secret = issuer, client_id, client_secret
        self.redirect_uri, self.groups_claim, self._http = redirect_uri, groups_claim, http
        self.scopes = scopes
        self._meta: dict[str, Any] | None = None
        self._keys: dict[str, Any] = {}

    async def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            try:
                resp = await self._http.get(f"{self.issuer}/.well-known/openid-configuration")
                resp.raise_for_status()
                meta = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise OidcError(f"the issuer's OpenID configuration cannot be read ({type(exc).__name__})") from None
            if meta.get("issuer") != self.issuer:
                raise OidcError("the issuer's OpenID configuration names another issuer")
            self._meta = meta
        return self._meta

    async def authorize_url(self, state: str, nonce: str, challenge: str) -> str:
        meta = await self.metadata()
        query = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                 "scope": self.scopes, "state": state, "nonce": nonce,
                 "code_challenge": challenge, "code_challenge_method": "S256"}
        return f"{meta['authorization_endpoint']}?{urlencode(query)}"

    async def redeem(self, code: str, verifier: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims for ``code``, checked; OidcError otherwise."""
        meta = await self.metadata()
        try:
            resp = await self._http.post(meta["token_endpoint"], auth=(self.client_id, self._secret),
                                         data={"grant_type": "authorization_code", "code": code,
                                               "redirect_uri": self.redirect_uri, "code_verifier": verifier})
        except httpx.HTTPError as exc:
            raise OidcError(f"the token endpoint cannot be reached ({type(exc).__name__})") from None
        body = _json(resp)
        if resp.status_code != 200:
            raise OidcError(f"Okta refused the sign-in: {str(body.get('error') or resp.status_code)[:60]}")
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("Okta's answer has no ID token")
        claims = await self._verify(id_token)
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcError("the ID token's nonce is not this sign-in's")
        return claims

    async def _verify(self, id_token: str) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
        except jwt.PyJWTError:
            raise OidcError("the ID token is not a JWT") from None
        key = await self._key(kid)
        try:
            return jwt.decode(id_token, key, algorithms=["RS256"], audience=self.client_id, issuer=self.issuer,
                              options={"require": ["exp", "iat", "iss", "aud", "sub"]}, leeway=60)
        except jwt.PyJWTError as exc:
            raise OidcError(f"the ID token is not valid ({type(exc).__name__})") from None

    async def _key(self, kid: str | None):
        if kid not in self._keys:  # unknown: the issuer may have rotated its keys; read them again
            meta = await self.metadata()
            try:
                resp = await self._http.get(meta["jwks_uri"])
                resp.raise_for_status()
                keys = jwt.PyJWKSet.from_dict(resp.json()).keys
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                raise OidcError(f"the issuer's keys cannot be read ({type(exc).__name__})") from None
            self._keys = {k.key_id: k.key for k in keys}
        if kid not in self._keys:
            raise OidcError("the ID token is signed by a key the issuer does not publish")
        return self._keys[kid]

    def role(self, claims: dict[str, Any], admin_groups: set[str], viewer_groups: set[str]) -> str | None:
        groups = claims.get(self.groups_claim) or []
        groups = {g for g in groups if isinstance(g, str)} if isinstance(groups, list) else set()
        if groups & admin_groups:
            return "admin"
        if groups & viewer_groups:
            return "viewer"
        return None


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
