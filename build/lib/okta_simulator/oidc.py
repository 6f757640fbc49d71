"""OpenID Connect sign-in as Okta's org authorization server does it for a web app: the authorization code flow with
PKCE (S256 only), users signing in with their Okta password, RS256 ID tokens signed by a key of the org published as
a JWKS, opaque access tokens for `/oauth2/v1/userinfo`, and logout.

`/authorize` refuses an unknown client or a redirect URI not registered exactly with a page of its own (never a
redirect); its other errors go back to the redirect URI with `error`, `error_description` and `state`. A valid
request waits server side (ten minutes) under an id the sign-in form carries; the right password of an ACTIVE user
turns it into a code that lives 60 s, is good once, and is bound to the client, redirect URI, user, scopes, nonce and
code challenge; okta_simulator.oidc_token redeems it at `/oauth2/v1/token`. Redeeming a code a second time fails and
revokes the access token it gave (RFC 6749 4.1.2).
Logout ends the app's access tokens of the user the `id_token_hint` names (an expired hint is good, as at Okta) and
redirects only to a registered post-logout URI; otherwise it shows a signed-out page.

Claims by scope: `profile` -> name (first + last), preferred_username (login), given_name, family_name, locale,
zoneinfo, updated_at; `email` -> email, email_verified; `groups` -> the names of the user's groups that match the
app's groups claim filter (a regex the whole name must match), as the org server's "Groups claim filter" does.

Web apps are registered through `/_admin/oidc/clients` or `--oidc-client FILE` (JSON: `client_id`, `client_secret`,
`redirect_uris`, `groups_claim_filter`, `post_logout_redirect_uris`); they survive `/_admin/reset` as the org's apps
would. Secrets, codes and tokens never appear in an answer other than the one that issues them, nor in a log.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode

from okta_bridge.jose import JoseError, RsaKey, decode_unverified, generate_rsa_key

from .domain import Org, User
from .ids import okta_id
from .passwords import verify_password

SCOPES = ("openid", "profile", "email", "address", "phone", "groups")
CODE_LIFETIME_S = 60
TOKEN_LIFETIME_S = 3600
PENDING_LIFETIME_S = 600
ZONEINFO = "America/Los_Angeles"  # Okta's default for a profile without timezone
PKCE = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 4.1 / 4.2


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass(repr=False)
class OidcClient:
    """An OIDC web app: its secret is kept as a digest and compared in constant time."""

    client_id: str
    secret_digest: bytes
    redirect_uris: tuple[str, ...]
    groups_claim_filter: re.Pattern[str]
    post_logout_redirect_uris: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"OidcClient({self.client_id!r}, redirect_uris={self.redirect_uris!r})"

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "OidcClient":
        uris = body.get("redirect_uris")
        if not body.get("client_id") or not body.get("client_secret") or not isinstance(uris, list) or not uris:
            raise ValueError("an OIDC client needs client_id, client_secret and at least one redirect_uri")
        try:
            pattern = re.compile(str(body.get("groups_claim_filter") or ".*"))
        except re.error:
            raise ValueError("groups_claim_filter is not a valid regular expression") from None
        return cls(str(body["client_id"]), _digest(str(body["client_secret"])), tuple(map(str, uris)), pattern,
                   tuple(map(str, body.get("post_logout_redirect_uris") or ())))

    def secret_matches(self, given: str) -> bool:
        return hmac.compare_digest(_digest(given), self.secret_digest)


@dataclass(frozen=True)
class AuthRequest:
    """A valid `/authorize` request waiting for the user's credentials."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str
    nonce: str | None
    code_challenge: str
    expires_at: float


@dataclass(frozen=True)
class Grant:
    """What an authorization code stands for."""

    request: AuthRequest
    user_id: str
    auth_time: float
    expires_at: float


@dataclass(frozen=True)
class Issued:
    client_id: str
    user_id: str
    scopes: tuple[str, ...]
    expires_at: float


class PageRefusal(Exception):
    """An `/authorize` error that cannot go back to the client (unknown client or redirect URI): a 400 page."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


def error_redirect(redirect_uri: str, error: str, description: str, state: str | None) -> str:
    query = urlencode({"error": error, "error_description": description, **({"state": state} if state else {})})
    return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"


@dataclass
class OidcServer:
    clock: Callable[[], float]
    org_url: Callable[[], str]
    org: Callable[[], Org]
    clients: dict[str, OidcClient] = field(default_factory=dict)
    pending: dict[str, AuthRequest] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    redeemed: dict[str, str] = field(default_factory=dict)  # code -> the access token it gave
    tokens: dict[str, Issued] = field(default_factory=dict)
    org_id: str = field(default_factory=lambda: okta_id("00o"))
    _key: RsaKey | None = field(default=None, repr=False)

    @property
    def key(self) -> RsaKey:
        """The org's signing key, made on first use (a 2048-bit key takes a moment; most tests never sign in)."""
        if self._key is None:
            self._key = generate_rsa_key(2048, kid=secrets.token_urlsafe(32))
        return self._key

    def register(self, client: OidcClient) -> None:
        self.clients[client.client_id] = client

    def metadata(self) -> dict:
        base = self.org_url()
        return {
            "issuer": base, "authorization_endpoint": f"{base}/oauth2/v1/authorize",
            "token_endpoint": f"{base}/oauth2/v1/token", "userinfo_endpoint": f"{base}/oauth2/v1/userinfo",
            "jwks_uri": f"{base}/oauth2/v1/keys", "end_session_endpoint": f"{base}/oauth2/v1/logout",
            "response_types_supported": ["code"], "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "subject_types_supported": ["public"], "scopes_supported": list(SCOPES),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "claims_supported": ["iss", "sub", "aud", "iat", "exp", "auth_time", "nonce", "amr", "idp", "name",
                                 "preferred_username", "given_name", "family_name", "locale", "zoneinfo",
                                 "updated_at", "email", "email_verified", "groups"],
            "code_challenge_methods_supported": ["S256"], "id_token_signing_alg_values_supported": ["RS256"],
            "request_parameter_supported": False,
        }

    def jwks(self) -> dict:
        return {"keys": [{**self.key.public_jwk(), "alg": "RS256", "use": "sig"}]}

    # ------------------------------------------------------------------ /authorize

    def begin(self, params: dict[str, str]) -> tuple[str | None, str | None]:
        """(the pending request's id, None) or (None, the error redirect); PageRefusal when no redirect may go."""
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            raise PageRefusal("invalid_client", "Invalid value for 'client_id' parameter.")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise PageRefusal("invalid_request", "The 'redirect_uri' parameter must be a Login redirect URI in the "
                                                 "client app settings.")
        state = params.get("state")
        refusal = self._refusal(params)
        if refusal is not None:
            return None, error_redirect(redirect_uri, *refusal, state)
        scopes = tuple(dict.fromkeys(params["scope"].split()))
        request = AuthRequest(client.client_id, redirect_uri, scopes, state or "", params.get("nonce"),
                              params["code_challenge"], self.clock() + PENDING_LIFETIME_S)
        self._forget_old()
        pending_id = secrets.token_urlsafe(24)
        self.pending[pending_id] = request
        return pending_id, None

    @staticmethod
    def _refusal(params: dict[str, str]) -> tuple[str, str] | None:
        """Okta's error and description for a request it answers at the redirect URI, None when it is valid."""
        if params.get("response_type") != "code":
            return "unsupported_response_type", "The response type is not supported by the authorization server. " \
                                                "Configured response types: [code]."
        scopes = (params.get("scope") or "").split()
        if "openid" not in scopes:
            return "invalid_scope", "The authentication request has an invalid 'scope' parameter."
        if any(s not in SCOPES for s in scopes):
            return "invalid_scope", "One or more scopes are not configured for the authorization server resource."
        if not params.get("state"):
            return "invalid_request", "The authorization request must include the 'state' parameter."
        challenge = params.get("code_challenge")
        if not challenge:
            return "invalid_request", "PKCE code challenge is required: this client must use code_challenge."
        if params.get("code_challenge_method") != "S256":
            return "invalid_request", "The code_challenge_method is invalid. Only 'S256' is supported."
        if not PKCE.fullmatch(challenge):
            return "invalid_request", "PKCE code challenge must be between 43 and 128 characters of [A-Za-z0-9-._~]."
        if params.get("prompt") == "none":
            return "login_required", "The client specified not to prompt, but the user is not logged in."
        return None

    def waiting(self, pending_id: str) -> AuthRequest | None:
        request = self.pending.get(pending_id)
        return request if request is not None and request.expires_at > self.clock() else None

    def sign_in(self, pending_id: str, username: str, password: str) -> str | None:
        """The redirect with a new code when an ACTIVE user gave the right password; None otherwise."""
        request = self.waiting(pending_id)
        user = self.org().users.get(self.org().logins.get(username.strip().lower(), ""))
        password_ok = verify_password(password, user.password_hash if user else None)  # hashed even with no user
        if request is None or user is None or not password_ok or user.status != "ACTIVE":
            return None
        del self.pending[pending_id]
        now = self.clock()
        user.last_login = now
        code = secrets.token_urlsafe(32)
        self.codes[code] = Grant(request, user.id, now, now + CODE_LIFETIME_S)
        separator = "&" if "?" in request.redirect_uri else "?"
        return f"{request.redirect_uri}{separator}{urlencode({'code': code, 'state': request.state})}"

    def _forget_old(self) -> None:
        now = self.clock()
        for store in (self.pending, self.codes, self.tokens):
            for k in [k for k, v in store.items() if v.expires_at <= now]:
                del store[k]

    def claims(self, user: User, scopes: tuple[str, ...], client: OidcClient) -> dict:
        """The user's claims the scopes grant (ID token and userinfo alike)."""
        p, out = user.profile, {}
        if "profile" in scopes:
            out.update(name=f"{p.get('firstName', '')} {p.get('lastName', '')}".strip(),
                       preferred_username=p.get("login"), given_name=p.get("firstName"),
                       family_name=p.get("lastName"), locale=p.get("locale", "en_US"),
                       zoneinfo=p.get("timezone", ZONEINFO), updated_at=int(user.last_updated))
        if "email" in scopes:
            out.update(email=p.get("email"), email_verified=True)
        if "groups" in scopes:
            names = (g.name for g in self.org().groups.values() if user.id in g.members)
            out["groups"] = sorted(n for n in names if client.groups_claim_filter.fullmatch(n))
        return {k: v for k, v in out.items() if v is not None}

    # ------------------------------------------------------------------ /userinfo and /logout

    def userinfo(self, access_token: str) -> dict | None:
        issued = self.tokens.get(access_token)
        user = self.org().users.get(issued.user_id) if issued else None
        client = self.clients.get(issued.client_id) if issued else None
        if issued is None or issued.expires_at <= self.clock() or user is None or client is None \
                or user.status != "ACTIVE":
            return None
        return {"sub": user.id, **self.claims(user, issued.scopes, client)}

    def logout(self, id_token_hint: str | None, post_logout_redirect_uri: str | None, state: str | None,
               client_id: str | None = None) -> str | None:
        """Ends the user's tokens for the app (named by the hint, or by `client_id` without one); the redirect to a
        registered post-logout URI, or None for the signed-out page (also when the URI is not registered: never a
        redirect elsewhere). ValueError when the hint is not an ID token of this org's apps."""
        if id_token_hint:
            claims = self._own_id_token(id_token_hint)
            client = self.clients.get(str(claims.get("aud")))
            ended = (str(claims.get("aud")), claims.get("sub"))
            for token in [t for t, i in self.tokens.items() if (i.client_id, i.user_id) == ended]:
                del self.tokens[token]
        else:
            client = self.clients.get(client_id or "")
        if client is None:
            raise ValueError("The 'id_token_hint' (or 'client_id') does not name an app of this org.")
        if not post_logout_redirect_uri or post_logout_redirect_uri not in client.post_logout_redirect_uris:
            return None
        query = urlencode({"state": state}) if state else ""
        return f"{post_logout_redirect_uri}{('&' if '?' in post_logout_redirect_uri else '?') + query if query else ''}"

    def _own_id_token(self, token: str) -> dict:
        """The claims of an ID token this org signed; an expired one is still a good hint, as Okta takes it."""
        try:
            header, claims = decode_unverified(token)
            signing_input, _, signature = token.rpartition(".")
            raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        except (JoseError, ValueError):
            raise ValueError("The 'id_token_hint' is not a valid ID token.") from None
        if header.get("alg") != "RS256" or claims.get("iss") != self.org_url() \
                or not self.key.verify(signing_input.encode(), raw):
            raise ValueError("The 'id_token_hint' is not a valid ID token.")
        return claims
