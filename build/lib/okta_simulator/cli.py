"""`python -m okta_simulator --host H --port P --plan PLAN --token-share S --token VALUE:00Tid [--org-url URL]
[--max-url-bytes N] [--oauth-client FILE] [--oidc-client FILE]`.

Every flag can also come from the environment: OKTA_SIM_HOST, OKTA_SIM_PORT, OKTA_SIM_PLAN,
OKTA_SIM_TOKEN_SHARE, OKTA_SIM_TOKENS (comma-separated VALUE:00Tid), OKTA_SIM_ORG_URL, OKTA_SIM_MAX_URL_BYTES,
OKTA_SIM_OAUTH_CLIENTS and OKTA_SIM_OIDC_CLIENTS (comma-separated files). `--oauth-client FILE` registers an OAuth 2.0
service app: a JSON file with `client_id`, `jwks` (its public keys), `scopes` (granted) and `dpop`
(okta_simulator.oauth). `--oidc-client FILE` registers an OIDC web app that signs users in (authorization code flow
with PKCE; discovery at ORG_URL/.well-known/openid-configuration): a JSON file with `client_id`, `client_secret`,
`redirect_uris`, `groups_claim_filter` (regex, default .*) and `post_logout_redirect_uris` (okta_simulator.oidc).
No request is logged (uvicorn's access log is off): URLs and forms carry codes and tokens.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import uvicorn

from . import apps_actions
from .app import create_app
from .plans import PLANS
from .sim import Settings, parse_token

H11_BUFFER = 1 << 20  # bytes of request line + headers uvicorn's h11 accepts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="okta_simulator", description=__doc__)
    p.add_argument("--host", default=env("OKTA_SIM_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("OKTA_SIM_PORT", "8040")))
    p.add_argument("--plan", choices=sorted(PLANS), default=env("OKTA_SIM_PLAN", "workforce"))
    p.add_argument("--token-share", type=float, default=float(env("OKTA_SIM_TOKEN_SHARE", "0.5")))
    p.add_argument("--token", action="append", default=None, help="VALUE:00Tid (repeatable)")
    p.add_argument("--org-url", default=env("OKTA_SIM_ORG_URL"))
    p.add_argument("--max-url-bytes", type=int, default=int(env("OKTA_SIM_MAX_URL_BYTES", "8192")),
                   help="an /api request whose path + query is longer is answered 414 (default 8192)")
    p.add_argument("--seed-app", action="append", default=[a for a in env("OKTA_SIM_SEED_APPS", "").split(",") if a],
                   help="ID:LABEL, an app that exists from the start with a fixed id (compose demo); repeatable")
    p.add_argument("--oauth-client", action="append",
                   default=[f for f in env("OKTA_SIM_OAUTH_CLIENTS", "").split(",") if f],
                   help="FILE: an OAuth 2.0 service app (JSON: client_id, jwks, scopes, dpop); repeatable")
    p.add_argument("--oidc-client", action="append",
                   default=[f for f in env("OKTA_SIM_OIDC_CLIENTS", "").split(",") if f],
                   help="FILE: an OIDC web app (JSON: client_id, client_secret, redirect_uris, groups_claim_filter, "
                        "post_logout_redirect_uris); repeatable")
    args = p.parse_args(argv)
    if args.token is None:
        args.token = [t for t in env("OKTA_SIM_TOKENS", "").split(",") if t] or ["test-token:00Tsimulator0000001"]
    args.org_url = args.org_url or f"http://{args.host}:{args.port}"
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    tokens = dict(parse_token(t) for t in args.token)
    clients = [json.loads(Path(f).read_text()) for f in args.oauth_client]
    web_apps = [json.loads(Path(f).read_text()) for f in args.oidc_client]
    return Settings(plan=args.plan, token_share=args.token_share, tokens=tokens, org_url=args.org_url.rstrip("/"),
                    max_url_bytes=args.max_url_bytes, oauth_clients=clients, oidc_clients=web_apps)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = settings_from(args)
    except ValueError:  # the message would quote the token
        raise SystemExit("okta_simulator: each --token (OKTA_SIM_TOKENS entry) must look like VALUE:00Tid") from None
    app = create_app(settings)
    for seed in args.seed_app:
        app_id, _, label = seed.partition(":")
        apps_actions.create_app(app.state.sim, label or app_id, app_id=app_id)
    # h11 refuses a request head it has to buffer beyond 16 KiB (uvicorn's default): our own URL limit decides
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, date_header=False,
                h11_max_incomplete_event_size=H11_BUFFER)
