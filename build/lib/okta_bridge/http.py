"""The HTTP client of the services: httpx's API (requests, errors, OpenTelemetry's instrumentation, the tests'
``MockTransport``) over aiohttp's connection pool.

Measured here against the demo target, 16 requests at a time: httpx's own pool (httpcore) costs about 2.4 ms of CPU
per request, because it checks every pooled connection against every waiting request each time one starts or ends;
over aiohttp it costs about 0.7 ms. Every connection kept is kept alive (a pool that closes and reopens connections
pays a connect per request), and the pool is no larger than what may be in flight.

TLS (:class:`TlsSettings`, one per SCIM connector and one for Okta): the trust store starts from ``trust`` (``system``:
the operating system's store, OpenSSL's default paths, where an internal CA is usually installed, and what aiohttp
used before this setting existed; ``certifi``: Mozilla's bundle shipped with the ``certifi`` package, what a plain
httpx client uses, for a host whose system store is missing or stale), then ``ca_file`` is added to it (an internal
CA that is not in the base store). ``client_cert_file`` and ``client_key_file`` present a client certificate (mutual
TLS). The files are read once, at start: a missing or unreadable file fails the start with its setting's name.

Plain ``http://`` is refused except for loopback (the demo and the tests) or with an explicit
``allow_insecure_http`` (:func:`check_http_url`): a bearer token or a person's data never crosses a network in clear
because of a typo.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any, Callable, Literal

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["TlsSettings", "check_http_url", "describe_transport_error", "is_loopback", "pooled_transport",
           "ssl_context"]


class TlsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trust: Literal["system", "certifi"] = Field(
        default="system", description="the base trust store: the OS's (system) or Mozilla's bundle (certifi)")
    ca_file: str | None = Field(default=None, description="PEM file of CA certificates added to the base store")
    client_cert_file: str | None = Field(default=None, description="PEM client certificate (chain) presented")
    client_key_file: str | None = Field(default=None, description="PEM private key of client_cert_file "
                                                                   "(omit when the certificate file holds it)")

    @model_validator(mode="after")
    def _key_needs_cert(self) -> "TlsSettings":
        if self.client_key_file and not self.client_cert_file:
            raise ValueError("client_key_file is set without client_cert_file")
        return self


def ssl_context(tls: TlsSettings | None = None, where: str = "tls") -> ssl.SSLContext:
    """The client context of ``tls``; ``where`` (e.g. ``OKTA_TLS`` or ``apps[0] (jira).tls``) names it in errors."""
    tls = tls or TlsSettings()
    if tls.trust == "certifi":
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    else:
        context = ssl.create_default_context()
    if tls.ca_file:
        try:
            context.load_verify_locations(cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{where}: ca_file {tls.ca_file}: cannot load ({_why(exc)})") from None
    if tls.client_cert_file:
        try:
            context.load_cert_chain(tls.client_cert_file, tls.client_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{where}: client_cert_file/client_key_file: cannot load ({_why(exc)})") from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def _why(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_http_url(url: str, allow_insecure_http: bool, setting: str) -> str:
    """``url`` if it is ``https://``, or ``http://`` to a loopback host or with ``allow_insecure_http``."""
    parsed = httpx.URL(url)
    if parsed.scheme == "https":
        return url
    if parsed.scheme != "http":
        raise ValueError(f"{setting}: the URL must start with https://")
    if not (allow_insecure_http or is_loopback(parsed.host)):
        raise ValueError(f"{setting}: http:// is accepted only for a loopback host (127.0.0.1, ::1, localhost); "
                         f"use https://, or set allow_insecure_http to send credentials in clear")
    return url


def describe_transport_error(exc: BaseException) -> str:
    """A transport error's type, and what TLS said when TLS was the cause (aiohttp's mapping reports a certificate
    that does not verify as a connect timeout): an operator sees which setting to look at, never a header."""
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):  # a refused client certificate (TLS 1.3) is only a disconnect
        return f"{type(exc).__name__}: TLS: the server's certificate is not trusted (tls: ca_file, trust)"
    return type(exc).__name__


def pooled_transport(max_connections: int, tls: TlsSettings | None = None,
                     context: ssl.SSLContext | None = None) -> httpx.AsyncBaseTransport:
    """``tls`` (or a ready ``context``) decides whom HTTPS trusts and what client certificate it presents."""
    context = context or ssl_context(tls)

    def session() -> aiohttp.ClientSession:  # made on first use, inside the running event loop
        connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30, ssl=context)
        return aiohttp.ClientSession(connector=connector, auto_decompress=False)

    factory: Callable[[], Any] = session
    return AiohttpTransport(client=factory)
