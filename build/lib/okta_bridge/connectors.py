"""The connectors file: one entry per on-prem app, mirroring Okta's "Configure SCIM Connector" form.

A wrong file fails at start with :class:`ConnectorsFileError`, whose message names the entry and the field.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from okta_bridge.http import TlsSettings, check_http_url
from okta_bridge.contracts import OktaId
from okta_bridge.redact import check_header_value

__all__ = ["AppConnector", "ConnectorsFile", "ConnectorsFileError", "DEFAULT_MAPPINGS", "DEFAULT_PARTITIONS", "PoolSettings",
           "is_group_id", "load_connectors"]

DEFAULT_MAPPINGS: dict[str, str] = {
    "userName": "credentials.userName",
    "name.givenName": "profile.firstName",
    "name.familyName": "profile.lastName",
    "emails": "profile.email",
    "displayName": "profile.displayName",
    "locale": "profile.locale",
    "externalId": "id",
}
_GROUP_ID = re.compile(r"00g[A-Za-z0-9]{17}")
_SOURCE_ROOTS = ("profile.", "credentials.userName", "id", "appProfile.")
_log = logging.getLogger(__name__)


def is_group_id(entry: str) -> bool:
    """An Okta group id: ``00g`` and 17 more letters or digits (anything else in push_groups is a name)."""
    return bool(_GROUP_ID.fullmatch(entry))


class ConnectorsFileError(ValueError):
    """The connectors file cannot be used; the message names the entry and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeaderAuth(_Strict):
    type: Literal["header"]
    header_name: str = Field(default="Authorization", pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
    value_env: str
    value_prefix: str = ""

    def headers(self) -> dict[str, str]:
        value = self.value_prefix + _env(self.value_env).get_secret_value()
        return {self.header_name: check_header_value(f"environment variable {self.value_env}", value)}


class BasicAuth(_Strict):
    type: Literal["basic"]
    username_env: str
    password_env: str

    def headers(self) -> dict[str, str]:
        import base64

        raw = f"{_env(self.username_env).get_secret_value()}:{_env(self.password_env).get_secret_value()}"
        return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


class NoAuth(_Strict):
    type: Literal["none"]

    def headers(self) -> dict[str, str]:
        return {}


def _env(name: str) -> SecretStr:
    """A secret from the environment, its trailing line ending (``\\n`` or ``\\r\\n``) removed: a secret written
    to a file by ``echo`` or an editor ends with one, and it is never part of a token (the same rule as the image's
    entrypoint for secret files). Nothing else is changed."""
    value = os.environ.get(name)
    if value is None:
        raise ValueError(f"environment variable {name} is not set")
    value = value.rstrip("\r\n")  # a secret file saved with a trailing newline, as the image's entrypoint strips it
    check_header_value(f"environment variable {name}", value, ascii_only=False)  # names it, never the value
    return SecretStr(value)


class Actions(_Strict):
    create_users: bool = True
    update_users: bool = True
    deactivate_users: bool = True
    push_pending_users: bool = False
    sync_password: bool | None = Field(
        default=None, description="deprecated: read as password_on_create (true: random, false: none)")


class GuardSettings(_Strict):
    """The accidental-deactivation guard (translator): past ``max_deactivations`` deactivating plans of the app
    within ``window_s`` seconds, the app's deactivations are held (not sent) until an operator releases or discards
    them (``bridgectl guard release|discard APP``). ``max_deactivations``: a number, or a share of the app's
    assigned users (``"10%"``, at least 1); ``null`` switches the guard off for the app."""
    max_deactivations: int | str | None = Field(default=500, description='a number, a share ("10%"), or null: off')
    window_s: int = Field(default=3600, ge=1, le=30 * 86400)

    @field_validator("max_deactivations")
    @classmethod
    def _number_or_share(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be 0 or more")
        if isinstance(value, str) and not re.fullmatch(r"(100|[0-9]{1,2})(\.[0-9]+)?%", value):
            raise ValueError('a share is written as a percentage from 0% to 100%, e.g. "10%"')
        return value



class AppConnector(_Strict):
    okta_app_id: OktaId  # goes into Okta URLs and every message: 20 letters and digits (0oa…)
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    base_url: str = Field(pattern=r"^https?://")
    scim_version: Literal["1.1", "2.0"] | None = None
    auth: Annotated[HeaderAuth | BasicAuth | NoAuth, Field(discriminator="type")]
    unique_user_field: str = "userName"
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_concurrency: int = Field(default=4, ge=1, le=256)
    pool: str = Field(default="default", pattern=r"^[a-z0-9_-]+$")
    actions: Actions = Actions()
    password_on_create: Literal["random", "none"] = Field(
        default="random", description="random: a create carries a random password, never stored or logged, as "
                                      "Okta's client sends one (some servers require it); none: for servers that "
                                      "refuse a password")
    content_type: Literal["application/scim+json", "application/json"] | None = Field(
        default=None, description="media type sent and accepted instead of the dialect's (SCIM 1.1 "
                                  "application/json, 2.0 application/scim+json): for a target that answers 415")
    send_if_match: bool = Field(
        default=True, description="send the version a read gave (ETag header or meta.version) as If-Match on the "
                                  "PUT built from it; off only for a target that mishandles If-Match")
    max_response_mb: int = Field(default=32, ge=1, le=1024, description="largest answer body read from the target")
    suspended: Literal["deactivate", "ignore"] = Field(
        default="ignore", description="ignore: nothing is sent for a SUSPENDED user, as Okta's SCIM 1.1 and 2.0 "
                                      "documentation says of Okta's own client; deactivate: active=false")
    deactivate_with: Literal["PUT", "PATCH"] = "PUT"
    accept_user_updates: bool = False
    attribute_mappings: dict[str, str | None] = Field(default_factory=dict)
    push_groups: list[str] = Field(
        default_factory=list, description="Okta groups pushed to the app: group ids (00g…) or exact group names")
    link_existing_groups: bool = Field(
        default=False, description="link a pushed group to a target group of the same displayName instead of "
                                   "failing; off: a pushed group is always created in the target")
    membership_authority: Literal["additive", "okta"] = Field(
        default="additive", description="additive: adds and removes only, members added on the target survive; "
                                        "okta: the target's member list is made equal to Okta's")
    group_update: Literal["PATCH", "PUT"] = Field(
        default="PATCH", description="PUT: read-modify-write of the whole group (App Integration Wizard apps)")
    membership_batch_size: int = Field(default=100, ge=1, le=1000, description="members per membership request")
    tls: TlsSettings = Field(default_factory=TlsSettings, description="trust store base, CA file, client certificate")
    guard: GuardSettings = Field(default_factory=GuardSettings,
                                 description="hold the app's deactivations past a threshold (mass deactivation)")
    allow_insecure_http: bool = Field(
        default=False, description="accept an http:// base_url to a host that is not loopback (credentials in clear)")

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> "AppConnector":
        check_http_url(self.base_url, self.allow_insecure_http, "base_url")
        return self

    @model_validator(mode="before")
    @classmethod
    def _migrate_sync_password(cls, data: object) -> object:
        """``actions.sync_password`` (before ``password_on_create``) is still read: true is ``random``, false
        ``none``, with a deprecation warning; both set and disagreeing is an error."""
        if not isinstance(data, dict) or not isinstance(data.get("actions"), dict):
            return data
        old = data["actions"].get("sync_password")
        if old is None:
            return data
        if not isinstance(old, bool):
            return data  # the field's own validation names the error
        migrated = "random" if old else "none"
        name = data.get("name") or data.get("okta_app_id") or "?"
        given = data.get("password_on_create")
        if given is not None and given != migrated:
            raise ValueError(f"actions.sync_password: {str(old).lower()} contradicts password_on_create: {given}; "
                             "remove actions.sync_password (deprecated)")
        _log.warning("connectors file: app %s: actions.sync_password is deprecated; read as "
                     "password_on_create: %s (set that instead)", name, migrated)
        return {**data, "password_on_create": migrated}

    @field_validator("push_groups")
    @classmethod
    def _push_groups_distinct(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for entry in value:
            if not entry.strip():
                raise ValueError("an entry is empty")
            if entry in seen:
                raise ValueError(f"{entry!r} is listed twice")
            seen.add(entry)
        return value

    @property
    def pushed_group_ids(self) -> list[str]:
        return [g for g in self.push_groups if is_group_id(g)]

    @property
    def pushed_group_names(self) -> list[str]:
        return [g for g in self.push_groups if not is_group_id(g)]

    @field_validator("attribute_mappings")
    @classmethod
    def _sources_known(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for target, source in value.items():
            if target in {"active", "id", "password"}:
                raise ValueError(f"{target!r} is set by the bridge and cannot be mapped")
            if source is not None and not source.startswith(_SOURCE_ROOTS):
                raise ValueError(f"{target}: source {source!r} must start with one of {', '.join(_SOURCE_ROOTS)}")
        return value

    @field_validator("auth")
    @classmethod
    def _auth_env_present(cls, value: "HeaderAuth | BasicAuth | NoAuth", info: ValidationInfo):
        if (info.context or {}).get("secrets", True):  # only the dispatcher, which sends them, needs them
            value.headers()  # raises with the variable's name (never its value) when it is missing
        return value

    @property
    def version(self) -> Literal["1.1", "2.0"]:
        """As Okta's agent reads it: ``/v2/`` at the end means 2.0, anything else 1.1, unless overridden."""
        if self.scim_version:
            return self.scim_version
        return "2.0" if self.base_url.rstrip("/").endswith("/v2") else "1.1"

    @property
    def max_response_bytes(self) -> int:
        return self.max_response_mb * 1024 * 1024

    @property
    def mappings(self) -> dict[str, str]:
        merged: dict[str, str | None] = {**DEFAULT_MAPPINGS, **self.attribute_mappings}
        return {k: v for k, v in merged.items() if v is not None}

    def auth_headers(self) -> dict[str, str]:
        return self.auth.headers()


DEFAULT_PARTITIONS = 8


class PoolSettings(_Strict):
    """A dispatcher pool. ``partitions``: the fixed number of partition queues its plans are hashed to; every
    replica of the translator and of the pool's dispatchers reads it here, and it is the ceiling for the pool's
    dispatcher replicas (a replica owns at least one partition or stands by). Changing it is refused while any
    state of the old count exists (see docs/architecture.md, *Partitions*)."""

    partitions: int = Field(default=DEFAULT_PARTITIONS, ge=1, le=256)


class ConnectorsFile(_Strict):
    apps: list[AppConnector]
    pools: dict[str, PoolSettings] = Field(default_factory=dict, description="per pool: its partitions")

    @model_validator(mode="after")
    def _unique(self) -> "ConnectorsFile":
        unknown = sorted(set(self.pools) - self.pool_names())
        if unknown:
            raise ValueError(f"pools: {', '.join(unknown)} is not the pool of any app")
        for field in ("okta_app_id", "name"):
            values = [getattr(a, field) for a in self.apps]
            dupes = {v for v in values if values.count(v) > 1}
            if dupes:
                raise ValueError(f"duplicate {field}: {', '.join(sorted(dupes))}")
        return self

    def by_app_id(self) -> dict[str, AppConnector]:
        return {a.okta_app_id: a for a in self.apps}

    def pool_names(self) -> set[str]:
        return {a.pool for a in self.apps}

    def partitions(self, pool: str) -> int:
        """The number of partitions of a pool: the one source of truth for the translator, the dispatchers and the
        chart."""
        settings = self.pools.get(pool)
        return settings.partitions if settings else DEFAULT_PARTITIONS


def _describe(error: dict, raw: dict) -> str:
    loc = list(error["loc"])
    where = "file"
    if len(loc) >= 2 and loc[0] == "apps" and isinstance(loc[1], int):
        entry = (raw.get("apps") or [{}])[loc[1]] if isinstance(raw.get("apps"), list) else {}
        label = entry.get("name") or entry.get("okta_app_id") or "?" if isinstance(entry, dict) else "?"
        where = f"apps[{loc[1]}] ({label})"
        loc = loc[2:]
    field = ".".join(str(p) for p in loc if p not in ("header", "basic", "none")) or "(entry)"
    return f"{where}: {field}: {error['msg']}"


def load_connectors(path: str | os.PathLike[str], secrets: bool = True) -> ConnectorsFile:
    """``secrets=False``: the targets' credentials (``value_env``…) are not read or required, for the services and
    commands that never write to a SCIM target (the poller, the translator, the topology and operator commands):
    each service holds only its own credentials."""
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConnectorsFileError(f"connectors file {file}: cannot read: {exc}") from None
    if not isinstance(raw, dict):
        raise ConnectorsFileError(f"connectors file {file}: expected a mapping with 'apps'")
    try:
        return ConnectorsFile.model_validate(raw, context={"secrets": secrets})
    except ValidationError as exc:
        lines = "; ".join(_describe(e, raw) for e in exc.errors(include_input=False, include_url=False))
        raise ConnectorsFileError(f"connectors file {file}: {lines}") from None
