"""The simulator's state in one place: the org, its System Log, tokens, limits and faults."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .domain import Org, User, new_user
from .eventlog import EventLog
from .oauth import OAuthApp, OAuthServer
from .oidc import OidcClient, OidcServer
from .events import actor_of, build_event
from .ratelimit import FaultInjector, RateLimiter

Clock = Callable[[], float]
ADMIN_PROFILE = {"login": "admin@example.com", "email": "admin@example.com", "firstName": "Simulator",
                 "lastName": "Admin", "displayName": "Simulator Admin", "locale": "en_US"}


@dataclass
class Settings:
    plan: str = "workforce"
    token_share: float = 0.5
    tokens: dict[str, str] = field(default_factory=lambda: {"test-token": "00Tsimulator0000001"})
    org_url: str = "http://127.0.0.1:8040"
    max_url_bytes: int = 8192  # a longer request target (path + query) is answered 414; changeable at run time
    oauth_clients: list[dict] = field(default_factory=list)  # OAuth 2.0 service apps (okta_simulator.oauth)
    oidc_clients: list[dict] = field(default_factory=list)  # OIDC web apps that sign users in (okta_simulator.oidc)


def parse_token(spec: str) -> tuple[str, str]:
    """'VALUE:00Tid' -> (value, id)."""
    value, sep, token_id = spec.rpartition(":")
    if not sep or not value or not token_id:
        raise ValueError(f"token must look like VALUE:00Tid, got {spec!r}")
    return value, token_id


class Simulator:
    def __init__(self, settings: Settings, clock: Clock = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.limiter = RateLimiter(settings.plan, settings.token_share)
        self.oauth = OAuthServer(clock, lambda: self.settings.org_url)  # survives reset(), as the org's apps would
        for client in settings.oauth_clients:
            self.oauth.register(OAuthApp.from_json(client))
        self.oidc = OidcServer(clock, lambda: self.settings.org_url, lambda: self.org)  # also survives reset()
        for client in settings.oidc_clients:
            self.oidc.register(OidcClient.from_json(client))
        self.reset()

    def reset(self) -> None:
        self.org = Org()
        self.log = EventLog()
        self.faults = FaultInjector()
        self.limiter = RateLimiter(self.limiter.plan, self.limiter.share)
        self.admin: User = new_user(ADMIN_PROFILE, "ACTIVE", self.clock())
        self.org.add_user(self.admin)

    def token_id(self, value: str) -> str | None:
        return self.settings.tokens.get(value)

    def now(self) -> float:
        return self.clock()

    def record(self, event_type: str, targets: list[dict], request_uri: str, token_id: str | None = None) -> dict:
        """Write one System Log event acted by the admin (through the console, or through `token_id`)."""
        now = self.clock()
        app = self.oauth.actor(token_id) if token_id else None  # a service app's token: the app is the actor
        actor, token_id = (app, None) if app else (actor_of(self.admin), token_id)
        event = build_event(event_type, actor, targets, now, request_uri, token_id)
        self.log.append(event, now)
        return event
