"""The authorization_code grant of the org authorization server (okta_simulator.oidc) at `POST /oauth2/v1/token`:
the web app authenticates with client_secret_basic or client_secret_post (one, not both; the secret compared in
constant time, even for an unknown client), and the code must exist, be unexpired, unused, its own, for the same
redirect URI, and match the PKCE verifier (`BASE64URL(SHA256(code_verifier)) == code_challenge`). Errors are RFC 6749
5.2 JSON with Okta's descriptions: 401 invalid_client, else 400 invalid_request or invalid_grant."""
from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import unquote_plus

from okta_bridge.jose import b64url, encode_jwt

from .domain import User
from .oidc import PKCE, TOKEN_LIFETIME_S, Grant, Issued, OidcClient, OidcServer

Answer = tuple[int, dict, dict]  # (status, JSON body, headers)
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_BAD_CODE = "The authorization code is invalid or has expired."
_BAD_CLIENT = "Client authentication failed. Either the client or the client credentials are invalid."
_NOBODY = OidcClient.from_json({"client_id": "-", "client_secret": secrets.token_urlsafe(32), "redirect_uris": ["-"]})


def _token_error(status: int, error: str, description: str, headers: dict | None = None) -> Answer:
    return status, {"error": error, "error_description": description}, {**_NO_STORE, **(headers or {})}


def exchange(server: OidcServer, form: dict[str, str], authorization: str | None) -> Answer:
    client, refused = _client(server, form, authorization)
    if refused is not None:
        return refused
    code, redirect_uri, verifier = form.get("code"), form.get("redirect_uri"), form.get("code_verifier")
    if not code or not redirect_uri:
        return _token_error(400, "invalid_request", "The 'code' and 'redirect_uri' parameters are required.")
    if code in server.redeemed:
        server.tokens.pop(server.redeemed[code], None)
        return _token_error(400, "invalid_grant", _BAD_CODE)
    grant = server.codes.get(code)
    if grant is None or grant.expires_at <= server.clock() or grant.request.client_id != client.client_id:
        return _token_error(400, "invalid_grant", _BAD_CODE)
    if redirect_uri != grant.request.redirect_uri:
        return _token_error(400, "invalid_grant", "The 'redirect_uri' does not match the redirection URI used in "
                                                  "the authorization request.")
    if not verifier:
        return _token_error(400, "invalid_request", "PKCE code verifier is required when the parameter "
                                                    "code_challenge is included in the authorize request.")
    if not PKCE.fullmatch(verifier) or \
            b64url(hashlib.sha256(verifier.encode("ascii")).digest()) != grant.request.code_challenge:
        return _token_error(400, "invalid_grant", "PKCE verification failed.")
    user = server.org().users.get(grant.user_id)
    if user is None or user.status != "ACTIVE":
        return _token_error(400, "invalid_grant", "The user is no longer active.")
    del server.codes[code]
    return 200, _tokens_for(server, code, grant, user, client), dict(_NO_STORE)


def _client(server: OidcServer, form: dict[str, str],
            authorization: str | None) -> tuple[OidcClient, None] | tuple[None, Answer]:
    """The client authenticated by client_secret_basic or client_secret_post (one of them, not both)."""
    scheme, _, value = (authorization or "").partition(" ")
    basic = scheme.lower() == "basic"
    if basic and (form.get("client_secret") or form.get("client_assertion")):
        return None, _token_error(400, "invalid_request", "Cannot supply multiple client credentials. Use one of "
                                  "the following: credentials in the Authorization header, credentials in the "
                                  "post body, or a client_assertion in the post body.")
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    if basic:
        try:
            raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except ValueError:
            raw = ""
        given_id, _, secret = raw.partition(":")
        client_id, secret = unquote_plus(given_id), unquote_plus(secret)  # RFC 6749 2.3.1: form-encoded first
        if form.get("client_id") not in (None, client_id):
            client_id = ""
    client = server.clients.get(client_id)
    matches = (client or _NOBODY).secret_matches(secret)  # compared even for an unknown client
    if client is None or not secret or not matches:
        headers = {"WWW-Authenticate": f'Basic realm="{server.org_url()}"'} if basic else None
        return None, _token_error(401, "invalid_client", _BAD_CLIENT, headers)
    return client, None


def _tokens_for(server: OidcServer, code: str, grant: Grant, user: User, client: OidcClient) -> dict:
    now = int(server.clock())
    access_token = secrets.token_urlsafe(32)
    scopes = grant.request.scopes
    server.tokens[access_token] = Issued(client.client_id, user.id, scopes, now + TOKEN_LIFETIME_S)
    server.redeemed[code] = access_token
    half = hashlib.sha256(access_token.encode("ascii")).digest()[:16]
    claims = {"sub": user.id, "ver": 1, "iss": server.org_url(), "aud": client.client_id, "iat": now,
              "exp": now + TOKEN_LIFETIME_S, "jti": "ID." + secrets.token_urlsafe(32), "amr": ["pwd"],
              "idp": server.org_id, "auth_time": int(grant.auth_time), "at_hash": b64url(half),
              **({"nonce": grant.request.nonce} if grant.request.nonce is not None else {}),
              **server.claims(user, scopes, client)}
    return {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S, "access_token": access_token,
            "scope": " ".join(scopes), "id_token": encode_jwt(claims, server.key, {"typ": "JWT"})}
