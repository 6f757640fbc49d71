"""An async SCIM 1.1/2.0 client that sends what Okta's SCIM client sends (okta-scim-protocol.md section 2).

Every request carries ``extensions["redacted_path"]``: the path relative to the base URL with ids replaced by
``{id}`` and the filter by ``<redacted>`` (ids may equal the userName). Name spans and log lines after it, never
after the URL. Errors are described in :mod:`scim_errors`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Literal
from urllib.parse import quote

import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .scim_dialects import dialect_for, user_body
from .scim_error_mapping import Scrubber, error_for_response, error_for_transport, excerpt
from .scim_errors import ScimNotFoundError, ScimPermanentError
from .scim_user import NoSafeMatch, ScimUser, pick_match

__all__ = ["USER_AGENT", "ScimClient"]

_tracer = trace.get_tracer("scim_dispatcher.scim")

USER_AGENT = "Okta SCIM Client 1.0.0"
_SEARCH = "startIndex=1&count=100"
_log = logging.getLogger(__name__)


class ScimClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        version: Literal["1.1", "2.0"],
        *,
        headers: Mapping[str, str] = {},
        timeout_s: float = 30.0,
        unique_field: str = "userName",
        deactivate_with: Literal["PUT", "PATCH"] = "PUT",
        gate: Callable[[], AbstractAsyncContextManager[object]] | None = None,
    ) -> None:
        """``gate``: entered around every request (the dispatcher's permits and its partition's deadline)."""
        if deactivate_with not in ("PUT", "PATCH"):
            raise ValueError("deactivate_with must be 'PUT' or 'PATCH'")
        self._http = http
        self._base = base_url.rstrip("/")
        self._dialect = dialect_for(version)
        self._headers = {"User-Agent": USER_AGENT, "Accept": self._dialect.media_type, **headers}
        self._timeout_s = timeout_s
        self._unique_field = unique_field
        self._deactivate_with = deactivate_with
        self._scrub = Scrubber.for_headers(headers)
        self._gate = gate or nullcontext

    @property
    def version(self) -> str:
        return self._dialect.version

    async def find_user(self, unique_value: str) -> ScimUser | None:
        expr = f'{self._unique_field} eq "{_filter_literal(unique_value)}"'
        path, redacted = f"/Users?filter={quote(expr, safe='')}&{_SEARCH}", f"/Users?filter=<redacted>&{_SEARCH}"
        scrub = self._scrub.with_values(identifiers=[unique_value])
        try:
            status, data = await self._call("GET", path, redacted, scrub)
        except ScimNotFoundError:
            if self._dialect.search_404_means_none:
                return None
            raise
        resources = next((v for k, v in data.items() if k.lower() == "resources"), None) or []
        users = [u for r in resources if isinstance(r, Mapping) and (u := ScimUser.from_resource(r))]
        try:
            return pick_match(users, self._unique_field, unique_value)
        except NoSafeMatch as exc:
            raise self._permanent("GET", redacted, status, str(exc)) from None

    async def list_users(self, page_size: int = 100):
        """Every account, as Okta's import reads them: ``GET /Users?startIndex=1&count=100``, then startIndex +=
        the page's size until ``totalResults``. Yields pages of :class:`ScimUser`."""
        start = 1
        while True:
            path = f"/Users?startIndex={start}&count={page_size}"
            _, data = await self._call("GET", path, "/Users?startIndex=<n>&count=<n>", self._scrub)
            resources = next((v for k, v in data.items() if k.lower() == "resources"), None) or []
            users = [u for r in resources if isinstance(r, Mapping) and (u := ScimUser.from_resource(r))]
            yield users
            total = next((v for k, v in data.items() if k.lower() == "totalresults"), None)
            start += len(resources)
            if not resources or not isinstance(total, int) or start > total:
                return

    async def get_user(self, user_id: str) -> ScimUser:
        scrub = self._scrub.with_values(identifiers=[user_id])
        _, data = await self._call("GET", _user_path(user_id), "/Users/{id}", scrub)
        return ScimUser.from_resource(data, fallback_id=user_id)  # type: ignore[return-value]

    async def create_user(self, attributes: Mapping[str, Any]) -> ScimUser:
        body = user_body(self._dialect, attributes, create=True)
        scrub = self._scrub_for(attributes)
        empty = "create returned empty user"  # Okta's words for it
        status, data = await self._call("POST", "/Users", "/Users", scrub, body=body, empty=empty)
        user = ScimUser.from_resource(data)
        if user is None:
            raise self._permanent("POST", "/Users", status, "create returned a user without id")
        return user

    async def replace_user(self, user_id: str, attributes: Mapping[str, Any]) -> ScimUser:
        body = user_body(self._dialect, attributes, user_id=user_id)
        scrub = self._scrub_for(attributes, user_id)
        _, data = await self._call("PUT", _user_path(user_id), "/Users/{id}", scrub, body=body, empty="")
        return ScimUser.from_resource(data or body, fallback_id=user_id)  # type: ignore[return-value]

    async def set_active(self, user_id: str, active: bool, current: ScimUser | None = None) -> None:
        """PATCH as Okta does for catalog apps, or PUT the whole user (fetched unless ``current`` is given)."""
        scrub = self._scrub.with_values(identifiers=[user_id])
        if self._deactivate_with == "PATCH":
            body = self._dialect.patch_active_body(user_id, active)
            await self._call("PATCH", _user_path(user_id), "/Users/{id}", scrub, body=body, empty="", lax=True)
            return
        current = current or await self.get_user(user_id)
        body = {k: v for k, v in current.raw.items() if k != "meta"}
        body.setdefault("schemas", [self._dialect.core_schema])
        body.update(id=user_id, active=active)
        scrub = scrub.with_values(identifiers=[current.user_name])
        await self._call("PUT", _user_path(user_id), "/Users/{id}", scrub, body=body, empty="", lax=True)

    async def test_connection(self) -> None:
        """What Okta's Test Connector Configuration does: the provider config, then a two-user listing."""
        spc = self._dialect.service_provider_config_path
        await self._call("GET", spc, spc, self._scrub)
        await self._call("GET", "/Users?startIndex=1&count=2", "/Users?startIndex=1&count=2", self._scrub)

    async def _call(
        self,
        method: str,
        path: str,
        redacted: str,
        scrub: Scrubber,
        *,
        body: Mapping[str, Any] | None = None,
        empty: str | None = None,
        lax: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Send, map failures to errors, and return the status and the JSON object answered.

        ``empty``: None means an empty 2xx body is an error; a string is that error's detail, "" accepts it.
        ``lax``: a body that is not JSON is accepted too, unless it is HTML (a login page answering 200).
        """
        response = await self._send(method, path, redacted, body)
        _log.debug("%s %s -> %s", method, redacted, response.status_code)
        if not response.is_success:
            raise error_for_response(response, method, redacted, self.version, scrub)
        if not response.content.strip():
            if empty == "":
                return response.status_code, {}
            raise self._permanent(method, redacted, response.status_code, empty or "empty body, expected SCIM JSON")
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            return response.status_code, data
        if lax and "html" not in response.headers.get("Content-Type", "").lower():
            return response.status_code, {}
        text = excerpt(response.text)
        raise self._permanent(method, redacted, response.status_code, scrub(text), reason="not SCIM JSON")

    async def _send(self, method: str, path: str, redacted: str, body: Mapping[str, Any] | None) -> httpx.Response:
        headers = dict(self._headers)
        content = None
        if body is not None:
            headers["Content-Type"] = self._dialect.media_type
            content = json.dumps(body).encode()
        # the span knows only the redacted path: a filter carries the userName, and ids may equal it
        with _tracer.start_as_current_span(
                f"SCIM {method} {redacted.split('?')[0]}", kind=SpanKind.CLIENT, record_exception=False,
                set_status_on_exception=False,
                attributes={"http.request.method": method, "url.template": redacted,
                            "url.full": self._base + redacted, "scim.version": self.version}) as span:
            try:
                async with self._gate():
                    response = await self._http.request(
                        method,
                        self._base + path,
                        headers=headers,
                        content=content,
                        timeout=self._timeout_s,
                        extensions={"redacted_path": redacted},
                    )
            except httpx.HTTPError as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise error_for_transport(exc, method, redacted, self.version, self._timeout_s) from None
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_status(Status(StatusCode.ERROR, str(response.status_code)))
            return response

    def _scrub_for(self, attributes: Mapping[str, Any], *ids: str) -> Scrubber:
        password = attributes.get("password")
        names = [attributes.get("userName"), attributes.get(self._unique_field), *ids]
        return self._scrub.with_values(
            secrets=[password if isinstance(password, str) else None],
            identifiers=[n for n in names if isinstance(n, str)],
        )

    def _permanent(self, method: str, path: str, status: int, detail: str | None, **kw: Any) -> ScimPermanentError:
        return ScimPermanentError(method, path, status, detail, version=self.version, **kw)


def _user_path(user_id: str) -> str:
    return "/Users/" + quote(user_id, safe="@")


def _filter_literal(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
