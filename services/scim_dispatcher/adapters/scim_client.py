"""An async SCIM 1.1/2.0 client that sends what Okta's SCIM client sends (okta-scim-protocol.md section 2).

Every request carries ``extensions["redacted_path"]``: the path relative to the base URL with ids replaced by
``{id}`` and the filter by ``<redacted>`` (ids may equal the userName). Name spans and log lines after it, never
after the URL. Errors are described in :mod:`scim_errors`.

Updates are read-modify-write, as Okta's client does them: the user is read (``GET /Users/{id}``), the managed
attributes are set on what the target returned (:func:`~scim_dialects.updated_user`, so attributes the bridge does
not manage survive a target that treats PUT as a full replace) and that is PUT back. When the read gave a version
(an ``ETag`` header, else ``meta.version``) the PUT carries it as ``If-Match``; a 412 means someone changed the
user on the target in between: it is read again and the change re-applied, up to :data:`WRITE_ATTEMPTS` times,
then the plan fails as transient (retried later, never overwriting the other change).

Bounded reads: an answer body over ``max_response_bytes`` is refused (never read past the limit), and a listing
stops with an error after :data:`MAX_PAGES` pages or when a page brings no account not already seen (a target
that ignores ``startIndex``): a listing that cannot be read completely is an error, never a shorter list.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Literal
from urllib.parse import quote

import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from okta_bridge.metrics import SCIM_REQUEST_SECONDS

from .scim_dialects import dialect_for, updated_user, user_body
from okta_bridge.redact import person_strings

from .scim_error_mapping import Scrubber, error_for_response, error_for_transport, excerpt
from .scim_errors import ScimNotFoundError, ScimPermanentError, ScimPreconditionFailedError, ScimTransientError
from .scim_user import NoSafeMatch, ScimUser, pick_match

__all__ = ["MAX_PAGES", "MAX_RESPONSE_BYTES", "USER_AGENT", "WRITE_ATTEMPTS", "ScimClient"]

_tracer = trace.get_tracer("scim_dispatcher.scim")

USER_AGENT = "Okta SCIM Client 1.0.0"
_SEARCH = "startIndex=1&count=100"
MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # default cap of one answer's body
MAX_PAGES = 10_000  # a listing longer than this (a million accounts at 100 a page) is refused as never-ending
WRITE_ATTEMPTS = 3  # a read-modify-write answered 412 this many times fails as transient
MEDIA_TYPES = ("application/scim+json", "application/json")
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
        content_type: str | None = None,
        send_if_match: bool = True,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        metrics_app: str = "",
    ) -> None:
        """``gate``: entered around every request (the dispatcher's permits and its partition's deadline).
        ``content_type``: the media type sent and accepted instead of the dialect's (a 2.0 target that answers 415 to
        ``application/scim+json`` takes ``application/json``). ``send_if_match``: send the version a read gave as
        ``If-Match`` on the write built from it. ``max_response_bytes``: the largest answer body read.
        ``metrics_app``: the app's label on ``bridge_scim_request_duration_seconds`` (its connector name)."""
        if deactivate_with not in ("PUT", "PATCH"):
            raise ValueError("deactivate_with must be 'PUT' or 'PATCH'")
        if content_type is not None and content_type not in MEDIA_TYPES:
            raise ValueError(f"content_type must be one of {', '.join(MEDIA_TYPES)}")
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        self._http = http
        self._base = base_url.rstrip("/")
        parsed = httpx.URL(self._base)
        self._host, self._port = parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)
        self._dialect = dialect_for(version)
        self._media_type = content_type or self._dialect.media_type
        self._send_if_match = send_if_match
        self._max_response_bytes = max_response_bytes
        self._metrics_app = metrics_app
        self._headers = {"User-Agent": USER_AGENT, "Accept": self._media_type, **headers}
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
        the page's size until ``totalResults``. Yields pages of :class:`ScimUser`.

        A listing that does not end is an error (:class:`ScimPermanentError`), raised before the page that would
        pass :data:`MAX_PAGES` or after a page that repeats accounts already listed, so that a caller never takes
        a partial listing for the whole: the pages yielded until then are only what they are."""
        start, seen, redacted = 1, set[str](), "/Users?startIndex=<n>&count=<n>"
        for _ in range(MAX_PAGES):
            path = f"/Users?startIndex={start}&count={page_size}"
            status, data = await self._call("GET", path, redacted, self._scrub)
            resources = next((v for k, v in data.items() if k.lower() == "resources"), None) or []
            resources = resources if isinstance(resources, list) else []
            users = [u for r in resources if isinstance(r, Mapping) and (u := ScimUser.from_resource(r))]
            if users and all(u.id in seen for u in users):
                raise self._permanent("GET", redacted, status, f"the listing repeats accounts already listed at "
                                      f"startIndex={start}: the target ignores startIndex", reason="endless listing")
            seen.update(u.id for u in users)
            yield users
            total = next((v for k, v in data.items() if k.lower() == "totalresults"), None)
            start += len(resources)
            if not resources or not isinstance(total, int) or start > total:
                return
        raise self._permanent("GET", redacted, None, f"more than {MAX_PAGES} pages: the listing was stopped",
                              reason="endless listing")

    async def get_user(self, user_id: str) -> ScimUser:
        scrub = self._scrub.with_values(identifiers=[user_id])
        _, data, etag = await self._fetch("GET", _user_path(user_id), "/Users/{id}", scrub)
        return ScimUser.from_resource(data, fallback_id=user_id, etag=etag)  # type: ignore[return-value]

    async def create_user(self, attributes: Mapping[str, Any]) -> ScimUser:
        body = user_body(self._dialect, attributes, create=True)
        scrub = self._scrub_for(attributes)
        empty = "create returned empty user"  # Okta's words for it
        status, data = await self._call("POST", "/Users", "/Users", scrub, body=body, empty=empty)
        user = ScimUser.from_resource(data)
        if user is None:
            raise self._permanent("POST", "/Users", status, "create returned a user without id")
        return user

    async def update_user(self, current: ScimUser, attributes: Mapping[str, Any]) -> ScimUser:
        """PUT ``current`` (the user as read from the target) with the managed ``attributes`` set on it; the rest
        of what the target holds is sent back unchanged. ``None`` in ``attributes`` clears that attribute. On 412
        the user is read again and the change re-applied (module docstring)."""
        scrub = self._scrub_for(attributes, current.id)
        return await self._modify_user(current, attributes, scrub)

    async def set_active(self, user_id: str, active: bool, current: ScimUser | None = None) -> None:
        """PATCH as Okta does for catalog apps, or PUT the whole user (fetched unless ``current`` is given) with
        ``active`` changed, If-Match and 412 as for :meth:`update_user`."""
        scrub = self._scrub.with_values(identifiers=[user_id])
        if self._deactivate_with == "PATCH":
            body = self._dialect.patch_active_body(user_id, active)
            await self._call("PATCH", _user_path(user_id), "/Users/{id}", scrub, body=body, empty="", lax=True)
            return
        current = current or await self.get_user(user_id)
        await self._modify_user(current, {"active": active}, scrub)

    async def _modify_user(self, current: ScimUser, attributes: Mapping[str, Any], scrub: Scrubber) -> ScimUser:
        """PUT ``current`` with ``attributes`` set on it, ``If-Match`` its version; 412: read again, re-apply."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            body = updated_user(self._dialect, current.raw, attributes)
            body["id"] = current.id
            condition = {"If-Match": current.etag} if self._send_if_match and current.etag else {}
            names = scrub.with_values(identifiers=[current.user_name])
            try:
                _, data, etag = await self._fetch("PUT", _user_path(current.id), "/Users/{id}", names, body=body,
                                                  empty="", headers=condition)
            except ScimPreconditionFailedError as exc:
                if attempt == WRITE_ATTEMPTS:
                    raise ScimTransientError(
                        "PUT", "/Users/{id}", 412, f"the user changed on the target between read and write "
                        f"{WRITE_ATTEMPTS} times; nothing was overwritten", version=self.version,
                        reason="precondition failed") from exc
                _log.debug("PUT /Users/{id} -> 412: reading the user again (attempt %d)", attempt)
                trace.get_current_span().add_event("412: read again and re-apply", {"scim.attempt": attempt})
                current = await self.get_user(current.id)
                continue
            return ScimUser.from_resource(data or body, fallback_id=current.id, etag=etag)  # type: ignore[return-value]
        raise AssertionError("unreachable")

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
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send, map failures to errors, and return the status and the JSON object answered.

        ``empty``: None means an empty 2xx body is an error; a string is that error's detail, "" accepts it.
        ``lax``: a body that is not JSON is accepted too, unless it is HTML (a login page answering 200).
        ``headers``: added to this request (``If-Match``).
        """
        status, data, _ = await self._fetch(method, path, redacted, scrub, body=body, empty=empty, lax=lax,
                                            headers=headers)
        return status, data

    async def _fetch(
        self,
        method: str,
        path: str,
        redacted: str,
        scrub: Scrubber,
        *,
        body: Mapping[str, Any] | None = None,
        empty: str | None = None,
        lax: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], str | None]:
        """:meth:`_call`, and the answer's ``ETag`` header."""
        response = await self._send(method, path, redacted, body, headers)
        _log.debug("%s %s -> %s", method, redacted, response.status_code)
        etag = response.headers.get("ETag", "").strip() or None
        if response.status_code == 415 and body is not None:
            other = next(m for m in MEDIA_TYPES if m != self._media_type)
            raise self._permanent(method, redacted, 415, f"the target refuses Content-Type {self._media_type}; set "
                                  f"the connector's content_type: {other}")
        if not response.is_success:
            raise error_for_response(response, method, redacted, self.version, scrub)
        if not response.content.strip():
            if empty == "":
                return response.status_code, {}, etag
            raise self._permanent(method, redacted, response.status_code, empty or "empty body, expected SCIM JSON")
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            return response.status_code, data, etag
        if lax and "html" not in response.headers.get("Content-Type", "").lower():
            return response.status_code, {}, etag
        text = excerpt(response.text)
        raise self._permanent(method, redacted, response.status_code, scrub(text), reason="not SCIM JSON")

    async def _send(self, method: str, path: str, redacted: str, body: Mapping[str, Any] | None,
                    extra: Mapping[str, str] | None = None) -> httpx.Response:
        headers = {**self._headers, **(extra or {})}
        content = None
        if body is not None:
            headers["Content-Type"] = self._media_type
            content = json.dumps(body).encode()
        # the span knows only the redacted path: a filter carries the userName, and ids may equal it
        with _tracer.start_as_current_span(
                f"SCIM {method} {redacted.split('?')[0]}", kind=SpanKind.CLIENT, record_exception=False,
                set_status_on_exception=False,
                attributes={"http.request.method": method, "url.template": redacted,
                            "url.full": self._base + redacted, "server.address": self._host,
                            "server.port": self._port, "scim.version": self.version}) as span:
            try:
                async with self._gate():
                    request = self._http.build_request(method, self._base + path, headers=headers, content=content,
                                                       timeout=self._timeout_s,
                                                       extensions={"redacted_path": redacted})
                    started = time.perf_counter()
                    # the whole request, a connection's wait and a slow answer's body included, ends within the
                    # timeout: the partition's local deadline is the lease's expiry less this (and a margin)
                    try:
                        async with asyncio.timeout(self._timeout_s):
                            response = await self._bounded(await self._http.send(request, stream=True), method,
                                                           redacted)
                    except TimeoutError:
                        raise httpx.TimeoutException("the request's total time ran out", request=request) from None
                    SCIM_REQUEST_SECONDS.labels(self._metrics_app, method).observe(time.perf_counter() - started)
            except httpx.HTTPError as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise error_for_transport(exc, method, redacted, self.version, self._timeout_s) from None
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(Status(StatusCode.ERROR, str(response.status_code)))
            return response

    async def _bounded(self, streamed: httpx.Response, method: str, redacted: str) -> httpx.Response:
        """The answer with its body read, never past ``max_response_bytes`` (a larger one is an error)."""
        limit = self._max_response_bytes
        try:
            declared = streamed.headers.get("Content-Length", "")
            body = bytearray()
            if not (declared.isdigit() and int(declared) > limit):
                async for chunk in streamed.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        break
            if len(body) > limit or (declared.isdigit() and int(declared) > limit):
                raise self._permanent(method, redacted, streamed.status_code,
                                      f"the answer's body is over {limit} bytes; not read (max_response_mb)",
                                      reason="answer too large")
        finally:
            await streamed.aclose()
        drop = {b"content-encoding", b"content-length", b"transfer-encoding"}  # the body is decoded and whole
        return httpx.Response(streamed.status_code, content=bytes(body), request=streamed.request,
                              headers=[(k, v) for k, v in streamed.headers.raw if k.lower() not in drop])

    def _scrub_for(self, attributes: Mapping[str, Any], *ids: str) -> Scrubber:
        password = attributes.get("password")
        names = [attributes.get("userName"), attributes.get(self._unique_field), *ids]
        return self._scrub.with_values(
            secrets=[password if isinstance(password, str) else None],
            identifiers=[n for n in names if isinstance(n, str)],
            personal=person_strings(v for k, v in attributes.items() if k != "password"),  # names, emails, department…
        )

    def _permanent(self, method: str, path: str, status: int, detail: str | None, **kw: Any) -> ScimPermanentError:
        return ScimPermanentError(method, path, status, detail, version=self.version, **kw)


def _user_path(user_id: str) -> str:
    return "/Users/" + quote(user_id, safe="@")


def _filter_literal(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
