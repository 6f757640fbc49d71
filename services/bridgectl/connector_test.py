"""``bridgectl test-connector APP``: what Okta's "Test Connector Configuration" button does, and the Okta side.

The target: ``GET /ServiceProviderConfigs`` (SCIM 1.1) or ``/ServiceProviderConfig`` (2.0), ``GET
/Users?startIndex=1&count=2`` and ``GET /Groups?startIndex=1&count=100``, each bounded by a timeout of its own (a
target that hangs is reported, not waited for). Okta: the app exists, the bridge's credentials can list its users,
read the System Log, and find the groups it pushes. Every finding is in plain words; nothing is written anywhere,
and no credential, user name or email is printed (only counts, statuses and what the target announces).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

import httpx
import typer

from bridgectl.common import CONNECTORS, JSON, bad_input, console, emit, load, resolve_app
from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import is_okta_id

__all__ = ["Check", "Report", "check_okta", "check_target", "test_connector"]

SPC = {"1.1": "/ServiceProviderConfigs", "2.0": "/ServiceProviderConfig"}
LIST_SCHEMAS = {"1.1": "urn:scim:schemas:core:1.0", "2.0": "urn:ietf:params:scim:api:messages:2.0:ListResponse"}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fatal: bool = True  # a failed check that makes the connector unusable (else a warning)


@dataclass
class Report:
    app: str
    checks: list[Check] = field(default_factory=list)
    announces: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, ok: bool, detail: str, fatal: bool = True) -> None:
        self.checks.append(Check(name, ok, detail, fatal))

    @property
    def usable(self) -> bool:
        return all(c.ok or not c.fatal for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"app": self.app, "usable": self.usable, "announces": self.announces,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "fatal": c.fatal} for c in self.checks]}


async def _get(http: httpx.AsyncClient, url: str, headers: dict[str, str], timeout_s: float) \
        -> tuple[httpx.Response | None, str | None]:
    """The answer, or why there is none, in plain words."""
    try:
        return await asyncio.wait_for(http.get(url, headers=headers), timeout_s), None
    except (TimeoutError, httpx.TimeoutException):
        return None, f"no answer within {timeout_s:g} s (timeout): the target hangs or is unreachable"
    except httpx.ConnectError as exc:
        text = str(exc)
        if isinstance(exc.__cause__, ssl.SSLError) or "SSL" in text or "CERTIFICATE" in text.upper():
            return None, f"TLS failed ({text[:200]}): check the certificate, tls.ca_file or the host name"
        return None, f"cannot connect ({text[:200] or type(exc).__name__})"
    except httpx.HTTPError as exc:
        return None, f"request failed: {type(exc).__name__}: {str(exc)[:200]}"


def _problem(resp: httpx.Response, app: AppConnector) -> str | None:
    """What is wrong with an answer, or None when it is a SCIM JSON answer."""
    ctype = resp.headers.get("content-type", "")
    if resp.status_code in (401, 403):
        return (f"{resp.status_code}: the target refused the credentials (check the secret in "
                f"{getattr(app.auth, 'value_env', None) or getattr(app.auth, 'username_env', None) or 'auth'})")
    if resp.status_code == 415:
        return (f"415: the target refuses the media type {app.content_type or 'of the SCIM version'}; set "
                "content_type: application/json (or application/scim+json) in the connector")
    if "html" in ctype or resp.text.lstrip()[:1] == "<":
        return (f"{resp.status_code}: HTML instead of SCIM (a login page, a proxy or the wrong base_url?)")
    if resp.status_code >= 400:
        return f"{resp.status_code}: {resp.reason_phrase or 'error'}"
    try:
        body = resp.json()
    except ValueError:
        return f"{resp.status_code}: the answer is not JSON ({ctype or 'no content type'})"
    if not isinstance(body, dict):
        return f"{resp.status_code}: the answer is JSON but not a SCIM object"
    return None


async def check_target(app: AppConnector, http: httpx.AsyncClient, timeout_s: float) -> Report:
    report = Report(app.name)
    base = app.base_url
    headers = {"Accept": "application/scim+json, application/json", **app.auth_headers()}
    version = app.version
    report.add("base URL", base.endswith("/"), "ends with a slash" if base.endswith("/") else
               f"{base} has no trailing slash: Okta's agent and this bridge append paths to it; write it as Okta "
               "shows it, ending with '/'", fatal=False)
    spc_url = base.rstrip("/") + SPC[version]
    resp, why = await _get(http, spc_url, headers, timeout_s)
    if resp is None:
        report.add(f"GET {SPC[version]}", False, why or "")
        return report  # no point asking the rest of a target that does not answer
    problem = _problem(resp, app)
    if resp.status_code == 404:
        other = "2.0" if version == "1.1" else "1.1"
        alt, _ = await _get(http, base.rstrip("/") + SPC[other], headers, timeout_s)
        if alt is not None and alt.status_code < 400 and _problem(alt, app) is None:
            problem = (f"404: wrong SCIM version: the connector speaks {version} but the target answers "
                       f"{SPC[other]} ({other}); set scim_version: \"{other}\"" +
                       (" or end base_url with /v2/" if other == "2.0" else ""))
            resp, version = alt, other
    report.add(f"GET {SPC[app.version]}", problem is None, problem or f"{resp.status_code}: SCIM {version} "
               "service provider configuration")
    if problem is None:
        spc = resp.json()
        report.announces = {
            "scim_version": version,
            "patch": (spc.get("patch") or {}).get("supported"),
            "filter": (spc.get("filter") or {}).get("supported"),
            "filter_max_results": (spc.get("filter") or {}).get("maxResults"),
            "bulk": (spc.get("bulk") or {}).get("supported"),
            "etag": (spc.get("etag") or {}).get("supported"),
            "change_password": (spc.get("changePassword") or {}).get("supported"),
            "sort": (spc.get("sort") or {}).get("supported"),
            "authentication": [s.get("type") or s.get("name") for s in spc.get("authenticationSchemes") or []
                               if isinstance(s, dict)],
        }
    for path, what, fatal in (("/Users?startIndex=1&count=2", "users", True),
                              ("/Groups?startIndex=1&count=100", "groups", bool(app.push_groups))):
        resp, why = await _get(http, base.rstrip("/") + path, headers, timeout_s)
        if resp is None:
            report.add(f"GET {path}", False, why or "", fatal)
            continue
        problem = _problem(resp, app)
        if problem is None:
            body = resp.json()
            if "totalResults" not in body or not isinstance(body.get("Resources", []), list):
                problem = f"{resp.status_code}: not a SCIM list (no totalResults / Resources)"
            elif version == "2.0" and LIST_SCHEMAS["2.0"] not in (body.get("schemas") or []):
                problem = f"{resp.status_code}: a 2.0 list without the ListResponse schema"
        if problem is None:
            detail = f"{resp.status_code}: lists {what} ({body.get('totalResults')} in the target)"
        elif what == "groups" and resp.status_code == 404:
            detail = "404: the target has no /Groups" + (": push_groups cannot work" if fatal else
                                                         " (no groups are pushed to it: fine)")
        else:
            detail = problem
        report.add(f"GET {path.split('?')[0]}", problem is None, detail, fatal)
    return report


async def check_okta(app: AppConnector, okta, report: Report) -> None:
    """The Okta side, read-only: the app, its users, the System Log, the pushed groups."""
    async def attempt(name: str, call, describe) -> Any:
        try:
            result = await call()
        except Exception as exc:  # noqa: BLE001 - told in plain words
            status = getattr(exc, "status", None)
            if status == 404:
                report.add(name, False, "404: not found in Okta (wrong okta_app_id, or another org?)")
            elif status in (401, 403):
                report.add(name, False, f"{status}: the bridge's Okta credentials may not read this (scopes or "
                                        "the token's admin role)")
            else:
                report.add(name, False, f"{type(exc).__name__}: {str(exc)[:200]}")
            return None
        report.add(name, True, describe(result))
        return result

    found = await attempt("Okta: the app", lambda: okta.get(f"/api/v1/apps/{app.okta_app_id}"),
                          lambda page: f"exists ({(page.body or {}).get('status', '?')}, "
                                       f"{(page.body or {}).get('signOnMode', '?')})")
    if found is not None and (found.body or {}).get("status") not in (None, "ACTIVE"):
        report.add("Okta: the app is active", False, f"the app is {found.body.get('status')} in Okta", fatal=False)
    await attempt("Okta: its users", lambda: okta.get(f"/api/v1/apps/{app.okta_app_id}/users", {"limit": 2}),
                  lambda page: f"readable ({len(page.body or [])} on a first page of 2)")
    await attempt("Okta: the System Log", lambda: okta.get("/api/v1/logs", {"limit": 1}),
                  lambda page: "readable")
    for group in app.push_groups:
        if is_okta_id(group):
            await attempt(f"Okta: pushed group {group}", lambda g=group: okta.get_group(g), lambda _: "exists")
        else:
            await attempt(f"Okta: pushed group {group!r}", lambda g=group: _named(okta, g),
                          lambda n: f"found ({n} group(s) of that name)")


async def _named(okta, name: str) -> int:
    groups = await okta.find_groups_named(name)
    if not groups:
        raise LookupError(f"no Okta group named {name!r}")
    return len(groups)



def test_connector(app: str = typer.Argument(..., help="the app's connector name or Okta app id"),
                   timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="seconds per request to the target"),
                   okta: bool = typer.Option(True, "--okta/--no-okta", help="check the Okta side too"),
                   connectors_file: str = CONNECTORS, json_: bool = JSON) -> None:
    """What Okta's "Test Connector Configuration" does, and the Okta side; exit 0 only when the connector is
    usable."""
    connector = resolve_app(load(connectors_file, secrets=True), app)
    report = asyncio.run(_run(connector, timeout, okta))

    def render() -> None:
        c = console()
        c.print(f"[bold]{connector.name}[/] ({connector.okta_app_id}) SCIM {connector.version} at {connector.base_url}")
        for check in report.checks:
            mark = "[green]ok[/]" if check.ok else ("[red]FAIL[/]" if check.fatal else "[yellow]warn[/]")
            c.print(f"  {mark}  {check.name}: {check.detail}", highlight=False)
        if report.announces:
            c.print("  the target announces: " + ", ".join(f"{k}={v}" for k, v in report.announces.items()),
                    highlight=False)
        c.print("[green]usable[/]" if report.usable else "[red]not usable[/]: fix what FAILed above")
    emit(json_, report.as_dict(), render)
    raise typer.Exit(0 if report.usable else 1)


async def _run(app: AppConnector, timeout_s: float, with_okta: bool) -> Report:
    from scim_dispatcher.adapters.traced_http import app_clients

    try:
        http = app_clients([app], 2)[app.okta_app_id]
    except ValueError as exc:
        bad_input(str(exc))
    try:
        report = await check_target(app, http, timeout_s)
    finally:
        await http.aclose()
    if with_okta:
        from bridgectl.bus import okta_client

        async with okta_client() as okta:
            await check_okta(app, okta, report)
    return report
