"""Settings shared by every service (pydantic-settings; nothing connects at import time).

Each service adds its own class with its own prefix (``POLLER_``, ``TRANSLATOR_``, ``DISPATCHER_``, ``AUDIT_``).
OpenTelemetry is configured by the standard ``OTEL_*`` variables (see :mod:`okta_bridge.telemetry`).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from okta_bridge.http import TlsSettings, check_http_url
from okta_bridge.redact import check_header_value

__all__ = ["BridgeSettings", "OktaSettings"]


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", hide_input_in_errors=True)  # URLs hold passwords

    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    mongodb_url: SecretStr = SecretStr("mongodb://127.0.0.1:27017/")
    mongodb_db: str = "okta_bridge"
    connectors_file: str = "deploy/connectors.example.yaml"
    prefetch: int = Field(default=64, description="unacknowledged messages per consumer")
    metrics_port: int = Field(default=0, description="Prometheus /metrics of this process (0: off)")


class OktaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OKTA_", extra="ignore", hide_input_in_errors=True)

    org_url: str = Field(description="the org, https://…; no default: a forgotten URL must not send the credentials "
                                     "elsewhere (the demo and the tests set the simulator's explicitly)")
    allow_insecure_http: bool = Field(default=False, description="accept an http:// org_url that is not loopback")
    tls_trust: Literal["system", "certifi"] = Field(default="system", description="base trust store (okta_bridge.http)")
    tls_ca_file: str | None = Field(default=None, description="PEM CA certificates added to the base store")
    tls_client_cert_file: str | None = Field(default=None, description="PEM client certificate (mutual TLS)")
    tls_client_key_file: str | None = Field(default=None, description="PEM key of the client certificate")
    # OAuth 2.0 service app (okta_bridge.okta_auth); set client_id to use it instead of an SSWS token
    client_id: str | None = Field(default=None, description="the service app's client id (0oa…): OAuth 2.0")
    private_key: SecretStr = SecretStr("")
    private_key_file: str | None = Field(default=None, description="PEM or JWK file of the private key")
    key_id: str | None = Field(default=None, description="kid of the key registered with the service app")
    scopes: str | None = Field(default=None, description="space-separated scopes; default: what the bridge needs")
    dpop: bool = Field(default=False, description="the service app requires DPoP-bound tokens")
    api_token: SecretStr = SecretStr("")
    api_token_id: str | None = Field(default=None, description="00T… id of the token: our own writes are ignored")
    request_timeout_s: float = 35.0
    max_response_mb: int = Field(default=64, ge=1, le=1024, description="largest Okta answer body read; a larger "
                                                                       "one is a transient error, never parsed")
    max_concurrent_requests: int = Field(
        default=20, ge=1, le=75, description="Okta requests at once across every replica of every service (Okta's "
                                             "concurrency limit is org-wide, 75 on current plans, shared with every "
                                             "other integration); shared through MongoDB (okta_bridge.permits)")

    @field_validator("client_id", "private_key_file", "key_id", "scopes", "api_token_id", "tls_ca_file",
                     "tls_client_cert_file", "tls_client_key_file", "dpop", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object, info: ValidationInfo) -> object:
        """An empty (or blank) value counts as not set: compose passes ``OKTA_CLIENT_ID: ${OKTA_CLIENT_ID:-}`` through
        as an empty string when the host has none, which must mean "no service app", not a client id of "" (and
        ``OKTA_DPOP=`` means the default, false, not an error)."""
        if isinstance(value, str) and not value.strip():
            return False if info.field_name == "dpop" else None
        return value

    @field_validator("api_token")
    @classmethod
    def _header_safe(cls, value: SecretStr) -> SecretStr:
        """The token goes into the Authorization header: refused at start (naming the variable, not the value)
        when it has a control character or surrounding whitespace, which the HTTP library would refuse later in
        an error quoting the header."""
        check_header_value("OKTA_API_TOKEN", value.get_secret_value())
        return value

    @field_validator("org_url")
    @classmethod
    def _normalise(cls, value: str) -> str:
        """`https://Acme.okta.com/` and `https://acme.okta.com` are one org: state is keyed by this string."""
        parts = urlsplit(value.strip())
        return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> "OktaSettings":
        check_http_url(self.org_url, self.allow_insecure_http, "OKTA_ORG_URL")
        if self.tls_client_key_file and not self.tls_client_cert_file:
            raise ValueError("OKTA_TLS_CLIENT_KEY_FILE is set without OKTA_TLS_CLIENT_CERT_FILE")
        return self

    @property
    def tls(self) -> TlsSettings:
        return TlsSettings(trust=self.tls_trust, ca_file=self.tls_ca_file, client_cert_file=self.tls_client_cert_file,
                           client_key_file=self.tls_client_key_file)
