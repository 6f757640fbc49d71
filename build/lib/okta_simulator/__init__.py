"""A faithful in-memory Okta Management API simulator (System Log polling, users and the users listing with
`filter`, user creation with a password, apps, app users, groups, per-bucket/per-token rate limits, a URL length
limit, fault injection) for tests and benchmarks; also the org authorization server, for service apps
(client credentials: okta_simulator.oauth) and for OIDC sign-in of users (authorization code flow with PKCE, ID
tokens, JWKS, userinfo, logout: okta_simulator.oidc).

Public surface:
  create_app(settings, clock)          the FastAPI app (in-process tests)
  Settings                             plan, token_share, tokens {value: id}, org_url, max_url_bytes,
                                       oauth_clients (OAuth 2.0 service apps: okta_simulator.oauth),
                                       oidc_clients (OIDC web apps: okta_simulator.oidc)
  SimulatorAdmin(base_url)             async client for the `/_admin` API (bulk users and assignments, passwords
                                       and OIDC web apps included)
  start_simulator(port, plan, tokens)  context manager running it as a subprocess
"""
from .admin_client import SimulatorAdmin
from .app import create_app
from .process import RunningSimulator, start_simulator
from .sim import Settings

__all__ = ["RunningSimulator", "Settings", "SimulatorAdmin", "create_app", "start_simulator"]
