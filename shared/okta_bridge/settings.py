"""Settings shared by every service (pydantic-settings; nothing connects at import time).

Each service adds its own class with its own prefix (``POLLER_``, ``TRANSLATOR_``, ``DISPATCHER_``, ``AUDIT_``).
OpenTelemetry is configured by the standard ``OTEL_*`` variables (see :mod:`okta_bridge.telemetry`).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    org_url: str = "http://127.0.0.1:8040"
    api_token: SecretStr = SecretStr("")
    api_token_id: str | None = Field(default=None, description="00T… id of the token: our own writes are ignored")
    request_timeout_s: float = 35.0
    max_concurrent_requests: int = Field(
        default=20, ge=1, le=75, description="Okta requests at once across every replica of every service (Okta's "
                                             "concurrency limit is org-wide, 75 on current plans, shared with every "
                                             "other integration); shared through MongoDB (okta_bridge.permits)")

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
