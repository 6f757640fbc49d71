"""TLS for real: a CA and certificates made in the test, an HTTPS server on loopback, and the services' own client
factory (okta_bridge.http) talking to it. The CA file is needed (neither base store trusts the test CA) and
sufficient; a configured client certificate is presented; plain http:// is refused unless loopback or allowed."""
from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import httpx
import pytest

from okta_bridge.connectors import ConnectorsFileError, load_connectors
from okta_bridge.http import TlsSettings, check_http_url, pooled_transport, ssl_context
from okta_bridge.okta_client import OktaClient, OktaTransientError
from okta_bridge.settings import OktaSettings
from scim_dispatcher.adapters.traced_http import app_clients
from tests.unit.tls_certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


class HttpsServer:
    """Answers every request 200 with the subject CN of the client certificate presented (or null)."""

    def __init__(self, certs: Certs, require_client_cert: bool = False) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certs.server_cert, certs.server_key)
        self.context.load_verify_locations(certs.ca)
        self.context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    @staticmethod
    async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (line := await reader.readline()) not in (b"\r\n", b""):
                pass
            peer = writer.get_extra_info("peercert") or {}
            cn = next((v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"), None)
            body = json.dumps({"client": cn}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def get(url: str, tls: TlsSettings | None) -> dict:
    async with httpx.AsyncClient(transport=pooled_transport(2, tls)) as http:
        return (await http.get(url + "/x")).json()


@pytest.mark.parametrize("trust", ["system", "certifi"])
async def test_the_ca_file_is_needed_and_sufficient(certs: Certs, trust: str) -> None:
    async with HttpsServer(certs) as url:
        with pytest.raises(httpx.TransportError, match="CERTIFICATE_VERIFY_FAILED"):  # the base store alone does
            await get(url, TlsSettings(trust=trust))                                # not trust the internal CA
        with pytest.raises(httpx.TransportError, match="CERTIFICATE_VERIFY_FAILED"):  # nor does another CA
            await get(url, TlsSettings(trust=trust, ca_file=str(certs.other_ca)))
        assert await get(url, TlsSettings(trust=trust, ca_file=str(certs.ca))) == {"client": None}


async def test_the_default_base_store_is_the_systems(certs: Certs, monkeypatch) -> None:
    """An internal CA installed in the OS's store (OpenSSL's default paths; ``SSL_CERT_FILE`` stands in for
    ``update-ca-certificates`` here) is trusted with the default settings, not with ``trust: certifi``."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    async with HttpsServer(certs) as url:
        assert await get(url, TlsSettings()) == {"client": None}
        with pytest.raises(httpx.TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await get(url, TlsSettings(trust="certifi"))


async def test_a_configured_client_certificate_is_presented(certs: Certs) -> None:
    async with HttpsServer(certs, require_client_cert=True) as url:
        tls = TlsSettings(ca_file=str(certs.ca))
        with pytest.raises(httpx.HTTPError):  # the server requires one: no certificate, no answer
            await get(url, tls)
        mutual = TlsSettings(ca_file=str(certs.ca), client_cert_file=str(certs.client_cert),
                             client_key_file=str(certs.client_key))
        assert await get(url, mutual) == {"client": "bridge-client"}


async def test_okta_settings_tls_reaches_the_okta_client(certs: Certs, monkeypatch) -> None:
    async with HttpsServer(certs, require_client_cert=True) as url:
        monkeypatch.setenv("OKTA_ORG_URL", url)
        without = OktaClient(url, "t", tls=OktaSettings().tls)
        with pytest.raises(OktaTransientError, match=r"TLS: the server's certificate is not trusted \(tls: ca_file"):
            await without.get("/api/v1/users/00u1")
        await without.aclose()
        monkeypatch.setenv("OKTA_TLS_CA_FILE", str(certs.ca))
        monkeypatch.setenv("OKTA_TLS_CLIENT_CERT_FILE", str(certs.client_cert))
        monkeypatch.setenv("OKTA_TLS_CLIENT_KEY_FILE", str(certs.client_key))
        client = OktaClient(url, "t", tls=OktaSettings().tls)
        assert (await client.get("/api/v1/users/00u1")).body == {"client": "bridge-client"}
        await client.aclose()


def test_an_unreadable_tls_file_fails_at_start_with_its_setting(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"OKTA_TLS: ca_file .*missing.pem: cannot load"):
        ssl_context(TlsSettings(ca_file=str(tmp_path / "missing.pem")), "OKTA_TLS")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="client_cert_file/client_key_file: cannot load"):
        ssl_context(TlsSettings(client_cert_file=str(tmp_path / "junk.pem")), "x")
    with pytest.raises(ValueError, match="client_key_file is set without client_cert_file"):
        TlsSettings(client_key_file=str(certs.client_key))


def connectors(tmp_path: Path, apps: list[dict]) -> Path:
    import yaml

    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump({"apps": apps}))
    return path


def app(name: str, base_url: str, **extra) -> dict:
    return {"okta_app_id": app_id(name), "name": name, "base_url": base_url, "auth": {"type": "none"}, **extra}


def app_id(name: str) -> str:
    return f"0oa{name}".ljust(20, "x")  # Okta's 20-character form


def test_connector_tls_gives_each_app_its_client_and_names_the_app_on_a_bad_file(certs: Certs, tmp_path) -> None:
    tls = {"ca_file": str(certs.ca), "client_cert_file": str(certs.client_cert),
           "client_key_file": str(certs.client_key)}
    file = load_connectors(connectors(tmp_path, [app("a", "https://a.lan/scim/v2/", tls=tls),
                                                 app("b", "https://b.lan/scim/v2/", tls=tls),
                                                 app("c", "https://c.lan/scim/v2/", tls={"trust": "certifi"})]))
    assert file.apps[0].tls == TlsSettings(**tls)
    clients = app_clients(file.apps)
    assert clients[app_id("a")] is clients[app_id("b")] and clients[app_id("c")] is not clients[app_id("a")]
    broken = load_connectors(connectors(tmp_path, [app("d", "https://d.lan/", tls={"ca_file": "/nonexistent.pem"})]))
    with pytest.raises(ValueError, match=r"d: tls: ca_file /nonexistent.pem: cannot load"):
        app_clients(broken.apps)
    with pytest.raises(ConnectorsFileError, match=r"tls.trust"):
        load_connectors(connectors(tmp_path, [app("e", "https://e.lan/", tls={"trust": "mine"})]))


def test_plain_http_only_for_loopback_or_when_allowed(tmp_path: Path) -> None:
    for url in ("http://127.0.0.1:8050/scim/v2/", "http://localhost:1/", "http://[::1]:8/", "https://jira.lan/"):
        assert check_http_url(url, False, "x") == url
    with pytest.raises(ValueError, match="base_url: http:// is accepted only for a loopback host"):
        check_http_url("http://jira.lan/scim/v2/", False, "base_url")
    with pytest.raises(ConnectorsFileError, match=r"apps\[0\] \(jira\).*http:// is accepted only for a loopback"):
        load_connectors(connectors(tmp_path, [app("jira", "http://jira.lan/scim/v2/")]))
    allowed = load_connectors(connectors(tmp_path, [app("jira", "http://jira.lan/scim/v2/", allow_insecure_http=True)]))
    assert allowed.apps[0].base_url == "http://jira.lan/scim/v2/"


def test_the_okta_url_is_required_and_https_unless_loopback_or_allowed(monkeypatch) -> None:
    monkeypatch.delenv("OKTA_ORG_URL", raising=False)
    with pytest.raises(ValueError, match="org_url"):  # no default: a forgotten URL sends no token anywhere
        OktaSettings()
    monkeypatch.setenv("OKTA_ORG_URL", "http://okta.lan")
    with pytest.raises(ValueError, match="OKTA_ORG_URL: http:// is accepted only for a loopback host"):
        OktaSettings()
    monkeypatch.setenv("OKTA_ALLOW_INSECURE_HTTP", "true")
    assert OktaSettings().org_url == "http://okta.lan"
    monkeypatch.setenv("OKTA_ORG_URL", "https://Acme.okta.com/")
    monkeypatch.delenv("OKTA_ALLOW_INSECURE_HTTP")
    monkeypatch.setenv("OKTA_TLS_TRUST", "certifi")
    settings = OktaSettings()
    assert settings.org_url == "https://acme.okta.com" and settings.tls == TlsSettings(trust="certifi")


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_secret_with_a_trailing_newline_is_sent_without_it(tmp_path: Path, monkeypatch, ending: str) -> None:
    monkeypatch.setenv("JIRA_TOKEN", "s3cret" + ending)
    file = load_connectors(connectors(tmp_path, [app("jira", "https://jira.lan/", auth={
        "type": "header", "value_env": "JIRA_TOKEN", "value_prefix": "Bearer "})]))
    assert file.apps[0].auth_headers() == {"Authorization": "Bearer s3cret"}
    monkeypatch.setenv("JIRA_USER", "svc\n")
    monkeypatch.setenv("JIRA_PASSWORD", "pw\r\n")
    basic = load_connectors(connectors(tmp_path, [app("jira", "https://jira.lan/", auth={
        "type": "basic", "username_env": "JIRA_USER", "password_env": "JIRA_PASSWORD"})]))
    assert basic.apps[0].auth_headers() == {"Authorization": "Basic c3ZjOnB3"}  # base64("svc:pw")
