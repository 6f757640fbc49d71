"""OAuth 2.0 for Okta, as the org authorization server does it for a service app: the client-credentials grant at
`POST /oauth2/v1/token` with `private_key_jwt` client authentication, scoped access tokens of one hour, DPoP-bound
tokens (with the `use_dpop_nonce` exchange) for an app that requires DPoP, and the scope each `/api/v1` endpoint
needs (403 `insufficient_scope` when the token lacks it). The same endpoint hands `grant_type=authorization_code`
(a web app signing a user in with OpenID Connect) to :mod:`okta_simulator.oidc_token`.

The client assertion is checked as Okta documents: signed (RS256) by a key of the app's registered JWKS (by `kid`
when the JWT names one), `iss` = `sub` = the client id, `aud` = the token endpoint's URL, not expired and living at
most an hour, and a `jti` never used before. A DPoP proof: `typ` `dpop+jwt`, the public `jwk` in its header and
signed by it, `htm`/`htu` of the request, recent `iat`, fresh `jti`, the server's current nonce on token requests,
and on API requests `ath` (the token's hash) and the thumbprint the token is bound to.

Apps are registered through `/_admin/oauth/clients` or `--oauth-client FILE` (JSON: `client_id`, `jwks`, `scopes`
granted, `dpop`). A write made with an app's token is logged with the app as the actor (`PublicClientApp`, id = the
client id) and no `requestApiTokenId`.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from okta_bridge.jose import JoseError, RsaKey, b64url, decode_unverified, public_from_jwk, thumbprint, verify_jwt

from .errors import OktaError, error_response, invalid_token

CodeGrant = Callable[[dict[str, str], str | None], tuple[int, dict, dict]]  # (form, Authorization) -> answer
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME_S = 3600
PROOF_MAX_AGE_S = 300


@dataclass
class OAuthApp:
    client_id: str
    keys: list[RsaKey]
    scopes: frozenset[str]
    dpop: bool = False
    label: str = "Okta bridge service app"

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "OAuthApp":
        jwks = body.get("jwks") or {}
        keys = [public_from_jwk(k) for k in (jwks.get("keys") if isinstance(jwks, dict) else jwks) or ()]
        if not body.get("client_id") or not keys:
            raise ValueError("an OAuth client needs client_id and jwks with at least one RSA key")
        return cls(str(body["client_id"]), keys, frozenset(body.get("scopes") or ()), bool(body.get("dpop")),
                   str(body.get("label") or cls.label))


@dataclass
class Issued:
    client_id: str
    scopes: frozenset[str]
    expires_at: float
    jkt: str | None


def required_scope(method: str, path: str) -> str | None:
    """The Okta scope an `/api/v1` request needs (`.manage` also grants `.read`)."""
    parts = [p for p in path.split("/") if p]
    kind = parts[2] if len(parts) > 2 else ""
    resource = {"logs": "logs", "users": "users", "apps": "apps", "groups": "groups"}.get(kind)
    if resource is None:
        return None
    if resource == "logs":
        return "okta.logs.read"
    return f"okta.{resource}.{'read' if method in ('GET', 'HEAD') else 'manage'}"


def _granted(scopes: frozenset[str], needed: str) -> bool:
    return needed in scopes or (needed.endswith(".read") and needed[:-5] + ".manage" in scopes)


@dataclass
class OAuthServer:
    clock: Callable[[], float]
    org_url: Callable[[], str]
    apps: dict[str, OAuthApp] = field(default_factory=dict)
    tokens: dict[str, Issued] = field(default_factory=dict)
    used_jti: dict[str, float] = field(default_factory=dict)  # client-assertion and DPoP-proof jti -> expiry
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    issued_count: int = 0

    @property
    def token_url(self) -> str:
        return f"{self.org_url()}/oauth2/v1/token"

    def register(self, app: OAuthApp) -> None:
        self.apps[app.client_id] = app

    def rotate_nonce(self) -> None:
        self.nonce = secrets.token_urlsafe(16)

    def _fresh_jti(self, jti: Any, expires_at: float) -> bool:
        now = self.clock()
        for old in [j for j, exp in self.used_jti.items() if exp < now]:
            del self.used_jti[old]
        if not isinstance(jti, str) or not jti or jti in self.used_jti:
            return False
        self.used_jti[jti] = expires_at
        return True

    # ------------------------------------------------------------------ the token endpoint

    def issue(self, form: dict[str, str], dpop: str | None) -> tuple[int, dict, dict]:
        """(status, body, headers) of a token request."""
        if form.get("grant_type") != "client_credentials":
            return _oauth(400, "unsupported_grant_type", "The grant type is not supported; a service app uses "
                                                         "client_credentials, a web app authorization_code.")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            return _oauth(401, "invalid_client", "Client authentication failed: private_key_jwt is required.")
        try:
            header, claims = decode_unverified(form["client_assertion"])
        except JoseError:
            return _oauth(401, "invalid_client", "The client_assertion is not a valid JWT.")
        app = self.apps.get(str(claims.get("iss")))
        if app is None or claims.get("sub") != app.client_id:
            return _oauth(401, "invalid_client", "The client_assertion's iss and sub must be a registered client_id.")
        keys = [k for k in app.keys if header.get("kid") in (None, k.kid)] or []
        now = self.clock()
        problem = "The client_assertion signature is invalid."
        for key in keys:
            try:
                verify_jwt(form["client_assertion"], key, now=now)
                problem = ""
                break
            except JoseError as exc:
                problem = "The client_assertion token is expired." if "expired" in str(exc) else problem
        if problem:
            return _oauth(401, "invalid_client", problem)
        if claims.get("aud") != self.token_url:
            return _oauth(401, "invalid_client", "The audience claim for client_assertion must be the endpoint "
                                                 "invoked for the request.")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp - now > 3600:
            return _oauth(401, "invalid_client", "The client_assertion token has an expiration too far into the "
                                                 "future or none.")
        if not self._fresh_jti(claims.get("jti"), float(exp)):
            return _oauth(401, "invalid_client", "The client_assertion token has already been used.")
        wanted = frozenset((form.get("scope") or "").split())
        if not wanted:
            return _oauth(400, "invalid_scope", "The authorization server resource does not have any configured "
                                                "default scopes, 'scope' must be provided.")
        refused = sorted(s for s in wanted if s not in app.scopes)
        if refused:
            return _oauth(400, "invalid_scope", f"The following scopes are not allowed: {' '.join(refused)}")
        jkt = None
        if app.dpop:
            if not dpop:
                return _oauth(400, "invalid_dpop_proof", "The DPoP proof JWT header is missing.")
            jkt, why = self._proof("POST", self.token_url, dpop, nonce_required=True)
            if why == "use_dpop_nonce":
                status, body, headers = _oauth(400, "use_dpop_nonce", "Authorization server requires nonce in "
                                                                      "DPoP proof.")
                return status, body, {**headers, "DPoP-Nonce": self.nonce}
            if why:
                return _oauth(400, "invalid_dpop_proof", why)
        token = secrets.token_urlsafe(32)
        self.tokens[token] = Issued(app.client_id, wanted, now + TOKEN_LIFETIME_S, jkt)
        self.issued_count += 1
        body = {"token_type": "DPoP" if jkt else "Bearer", "expires_in": TOKEN_LIFETIME_S, "access_token": token,
                "scope": " ".join(sorted(wanted))}
        return 200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"}

    def _proof(self, method: str, url: str, proof: str, *, nonce_required: bool = False,
               token: str | None = None) -> tuple[str | None, str]:
        """(the proof key's thumbprint, "" or what is wrong)."""
        try:
            header, claims = decode_unverified(proof)
            if header.get("typ") != "dpop+jwt" or not isinstance(header.get("jwk"), dict):
                return None, "The DPoP proof must have typ dpop+jwt and a jwk header."
            jwk = header["jwk"]
            if "d" in jwk:
                return None, "The DPoP proof's jwk must be a public key."
            verify_jwt(proof, public_from_jwk(jwk), now=self.clock())
            jkt = thumbprint(jwk)
        except (JoseError, KeyError):
            return None, "The DPoP proof is not signed by its jwk."
        if claims.get("htm") != method or claims.get("htu") != url:
            return None, "The DPoP proof's htm or htu does not match the request."
        iat = claims.get("iat")
        if not isinstance(iat, (int, float)) or abs(self.clock() - iat) > PROOF_MAX_AGE_S:
            return None, "The DPoP proof's iat is not recent."
        if nonce_required and claims.get("nonce") != self.nonce:
            return None, "use_dpop_nonce"
        if token is not None and claims.get("ath") != b64url(hashlib.sha256(token.encode()).digest()):
            return None, "The DPoP proof's ath does not match the access token."
        if not self._fresh_jti(claims.get("jti"), self.clock() + PROOF_MAX_AGE_S):
            return None, "The DPoP proof's jti has already been used."
        return jkt, ""

    # ------------------------------------------------------------------ API requests

    def authenticate(self, request: Request) -> tuple[str | None, JSONResponse | None]:
        """(the client id, None) for a valid access token that holds the endpoint's scope; (None, the answer)
        otherwise; (None, None) when the request carries no OAuth token at all."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme not in ("Bearer", "DPoP"):
            return None, None
        issued = self.tokens.get(token.strip())
        if issued is None or issued.expires_at <= self.clock():
            return None, error_response(invalid_token(), {"WWW-Authenticate": f'{scheme} error="invalid_token", '
                                                          'error_description="The access token is invalid."'})
        if issued.jkt is not None or scheme == "DPoP":
            url = f"{self.org_url()}{request.url.path}"
            jkt, why = (None, "The DPoP proof header is missing.") if not request.headers.get("dpop") else \
                self._proof(request.method, url, request.headers["dpop"], token=token.strip())
            if why or scheme != "DPoP" or jkt != issued.jkt:
                why = why or "The access token is DPoP-bound: send it as DPoP with a proof of its key."
                return None, error_response(invalid_token(), {"WWW-Authenticate": f'DPoP error="invalid_dpop_proof", '
                                                              f'error_description="{why}"'})
        needed = required_scope(request.method, request.url.path)
        if needed and not _granted(issued.scopes, needed):
            base = self.org_url()
            challenge = (f'Bearer authorization_uri="{base}/oauth2/v1/authorize", realm="{base}", scope="{needed}", '
                         'error="insufficient_scope", error_description="The access token provided does not contain '
                         f'the required scopes.", resource="{request.url.path}"')
            return None, error_response(OktaError(403, "E0000006", "You do not have permission to perform the "
                                                                   "requested action"),
                                        {"WWW-Authenticate": challenge})
        return issued.client_id, None

    def actor(self, client_id: str) -> dict | None:
        app = self.apps.get(client_id)
        if app is None:
            return None
        return {"id": app.client_id, "type": "PublicClientApp", "alternateId": app.client_id,
                "displayName": app.label, "detailEntry": None}


def _oauth(status: int, error: str, description: str) -> tuple[int, dict, dict]:
    return status, {"error": error, "error_description": description}, {"Cache-Control": "no-store"}


def build_oauth_router(server: OAuthServer, code_grant: CodeGrant | None = None) -> APIRouter:
    """`code_grant` answers `grant_type=authorization_code` (a web app signing a user in: okta_simulator.oidc)."""
    r = APIRouter()

    @r.post("/oauth2/v1/token")
    async def token(request: Request) -> JSONResponse:
        raw = parse_qs((await request.body()).decode("utf-8", "replace"))
        form = {k: v[0] for k, v in raw.items()}
        if form.get("grant_type") == "authorization_code" and code_grant is not None:
            status, body, headers = code_grant(form, request.headers.get("authorization"))
        else:
            status, body, headers = server.issue(form, request.headers.get("dpop"))
        return JSONResponse(body, status_code=status, headers=headers)

    @r.post("/_admin/oauth/clients", status_code=201)
    async def register(body: dict) -> dict:
        app = OAuthApp.from_json(body)
        server.register(app)
        return {"client_id": app.client_id, "scopes": sorted(app.scopes), "dpop": app.dpop}

    @r.get("/_admin/oauth/stats")
    async def stats() -> dict:
        return {"tokens_issued": server.issued_count}

    return r
