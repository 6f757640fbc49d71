"""The OIDC endpoints of the org authorization server (okta_simulator.oidc) over HTTP, and the small HTML pages a
browser sees: the sign-in form (title "Sign In", inputs `username` and `password`, submit `#okta-signin-submit`; the
pending request's id in a hidden field) and the error and signed-out pages. The token endpoint's
`authorization_code` grant is okta_simulator.oidc_token's, reached through `POST /oauth2/v1/token`
(okta_simulator.oauth)."""
from __future__ import annotations

from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from .oidc import OidcClient, OidcServer, PageRefusal

_PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>\n'
            f"<body>\n{body}\n</body></html>\n")
    return HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)


def sign_in_page(pending_id: str, message: str = "", username: str = "", status: int = 200) -> HTMLResponse:
    alert = f'<p class="okta-form-infobox-error" role="alert">{escape(message)}</p>\n' if message else ""
    form = (f'<h1>Sign In</h1>\n{alert}<form method="post" action="/oauth2/v1/authorize" id="form19">\n'
            f'<input type="hidden" name="request_id" value="{escape(pending_id)}">\n'
            f'<label for="okta-signin-username">Username</label>\n'
            f'<input type="text" id="okta-signin-username" name="username" value="{escape(username)}" '
            f'autocomplete="username">\n'
            f'<label for="okta-signin-password">Password</label>\n'
            f'<input type="password" id="okta-signin-password" name="password" autocomplete="current-password">\n'
            f'<input type="submit" id="okta-signin-submit" value="Sign In">\n</form>')
    return _page("Sign In", form, status)


def error_page(error: str, description: str, status: int = 400) -> HTMLResponse:
    body = (f"<h1>{status} Bad Request</h1>\n<p>Error Code: <code>{escape(error)}</code></p>\n"
            f"<p>Description: {escape(description)}</p>")
    return _page("Error", body, status)


async def _form(request: Request) -> dict[str, str]:
    raw = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in raw.items()}


def build_oidc_router(server: OidcServer) -> APIRouter:
    r = APIRouter()

    @r.get("/.well-known/openid-configuration")
    async def discovery() -> JSONResponse:
        return JSONResponse(server.metadata(), headers={"Cache-Control": "max-age=86400, must-revalidate"})

    @r.get("/oauth2/v1/keys")
    async def keys() -> JSONResponse:
        return JSONResponse(server.jwks(), headers={"Cache-Control": "max-age=3600, must-revalidate"})

    @r.get("/oauth2/v1/authorize")
    async def authorize(request: Request) -> Response:
        try:
            pending_id, redirect = server.begin(dict(request.query_params))
        except PageRefusal as refusal:
            return error_page(refusal.error, refusal.description)
        if redirect is not None:
            return RedirectResponse(redirect, status_code=302)
        return sign_in_page(pending_id or "")

    @r.post("/oauth2/v1/authorize")
    async def sign_in(request: Request) -> Response:
        form = await _form(request)
        pending_id, username = form.get("request_id", ""), form.get("username", "")
        if server.waiting(pending_id) is None:
            return error_page("invalid_request", "The sign-in request is unknown or has expired; start again.")
        redirect = server.sign_in(pending_id, username, form.get("password", ""))
        if redirect is None:
            return sign_in_page(pending_id, "Unable to sign in", username, status=401)
        return RedirectResponse(redirect, status_code=302, headers={"Cache-Control": "no-store"})

    @r.api_route("/oauth2/v1/userinfo", methods=["GET", "POST"])
    async def userinfo(request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        claims = server.userinfo(token.strip()) if scheme.lower() == "bearer" else None
        if claims is None:
            challenge = 'Bearer error="invalid_token", error_description="The access token is invalid."'
            return JSONResponse({"error": "invalid_token", "error_description": "The access token is invalid."},
                                status_code=401, headers={"WWW-Authenticate": challenge})
        return JSONResponse(claims, headers={"Cache-Control": "no-store"})

    @r.get("/oauth2/v1/logout")
    async def logout(request: Request) -> Response:
        params = request.query_params
        try:
            redirect = server.logout(params.get("id_token_hint"), params.get("post_logout_redirect_uri"),
                                     params.get("state"), params.get("client_id"))
        except ValueError as exc:
            return error_page("invalid_request", str(exc))
        if redirect is not None:
            return RedirectResponse(redirect, status_code=302)
        return _page("Signed Out", "<h1>Signed out</h1>\n<p>You have been signed out.</p>")

    @r.post("/_admin/oidc/clients", status_code=201)
    async def register(body: dict) -> dict:
        client = OidcClient.from_json(body)
        server.register(client)
        return {"client_id": client.client_id, "redirect_uris": list(client.redirect_uris),
                "groups_claim_filter": client.groups_claim_filter.pattern,
                "post_logout_redirect_uris": list(client.post_logout_redirect_uris)}

    return r
