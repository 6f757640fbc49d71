"""The console's settings (``CONSOLE_*``); the tokens are the audit API's (``API_TOKENS``, ``API_ALLOWED_HOSTS``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from okta_bridge.http import check_http_url

__all__ = ["ConsoleSettings"]


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore", hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = 8090
    public_url: str = Field(default="http://localhost:8090",
                            description="where people reach the console; the OIDC redirect is {public_url}/oidc/callback")
    allow_insecure_http: bool = Field(default=False, description="accept http:// public or issuer URLs that are not "
                                                                 "loopback (behind a TLS-terminating proxy)")
    oidc_issuer: str | None = Field(default=None, description="the Okta authorization server; default OKTA_ORG_URL")
    oidc_client_id: str | None = Field(default=None, description="the console's OIDC web app; empty: tokens only")
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_groups_claim: str = "groups"
    admin_groups: str = Field(default="okta-bridge-admins", description="comma-separated Okta group names")
    viewer_groups: str = Field(default="okta-bridge-viewers", description="comma-separated Okta group names")
    trace_url_template: str = Field(default="http://localhost:16686/trace/{trace_id}",
                                    description="a trace's page in Jaeger (or any UI): {trace_id} is replaced")
    actions_per_minute: int = Field(default=10, ge=1, description="previews and provisions per minute, all replicas")
    okta_reserve: float = Field(default=0.25, ge=0, le=1,
                                description="refuse a preview or provision when an Okta bucket it uses has less than "
                                            "this share of its limit left (the services need it)")
    session_ttl_s: int = Field(default=3600, ge=60, description="a session's lifetime: an Okta sign-in's role (from "
                                                                 "its groups) holds until it ends")
    oidc_scopes: str = Field(default="openid profile email groups",
                             description="asked of the authorization server; a custom one needs a groups scope and claim")

    @model_validator(mode="after")
    def _urls(self) -> "ConsoleSettings":
        self.public_url = check_http_url(self.public_url.rstrip("/"), self.allow_insecure_http,
                                         "CONSOLE_PUBLIC_URL")
        if self.oidc_issuer:
            self.oidc_issuer = check_http_url(self.oidc_issuer.rstrip("/"), self.allow_insecure_http,
                                              "CONSOLE_OIDC_ISSUER")
        if self.oidc_client_id and not self.oidc_client_secret.get_secret_value():
            raise ValueError("CONSOLE_OIDC_CLIENT_ID is set without CONSOLE_OIDC_CLIENT_SECRET")
        if "{trace_id}" not in self.trace_url_template:
            raise ValueError("CONSOLE_TRACE_URL_TEMPLATE needs {trace_id}")
        return self

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.public_url).scheme == "https"

    @property
    def origin(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    def groups(self, which: str) -> set[str]:
        value = self.admin_groups if which == "admin" else self.viewer_groups
        return {g.strip() for g in value.split(",") if g.strip()}
