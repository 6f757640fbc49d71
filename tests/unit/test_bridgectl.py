"""bridgectl over fakes: the connector test's findings in plain words (each failure Okta's button would show, and a
hanging target), names to ids, bad input (exit 2), --json."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest
from typer.testing import CliRunner

from bridgectl.app import app as bridgectl
from bridgectl.connector_test import check_okta, check_target
from okta_bridge.okta_client import OktaNotFoundError
from tests.unit.fakes import app_connector

APP = "0oa1jiraxxxxxxxxxxxx"
LIST20 = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
CONNECTORS = f"apps:\n  - {{okta_app_id: {APP}, name: jira, base_url: 'https://jira.lan/scim/v2/', auth: {{type: none}}}}\n"


def target(overrides=None, version="2.0"):
    """A SCIM target: its provider config, two users, no groups; ``overrides``: path -> response or coroutine."""
    async def handler(request: httpx.Request) -> httpx.Response:
        for path, answer in (overrides or {}).items():
            if request.url.path.endswith(path):
                return await answer(request) if callable(answer) else answer
        if request.url.path.endswith("/ServiceProviderConfig") and version == "2.0":
            return httpx.Response(200, json={"patch": {"supported": True}, "filter": {"supported": True,
                                                                                      "maxResults": 200},
                                             "authenticationSchemes": [{"type": "oauthbearertoken"}]})
        if request.url.path.endswith("/ServiceProviderConfigs") and version == "1.1":
            return httpx.Response(200, json={"patch": {"supported": False}})
        if request.url.path.endswith("/Users"):
            return httpx.Response(200, json={"schemas": [LIST20], "totalResults": 2, "Resources": [{}, {}]})
        if request.url.path.endswith("/Groups"):
            return httpx.Response(200, json={"schemas": [LIST20], "totalResults": 0, "Resources": []})
        return httpx.Response(404, json={"detail": "not found"})
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def report_of(http, **connector):
    data = {"base_url": "https://jira.lan/scim/v2/", **connector}
    return await check_target(app_connector(APP, "jira", **data), http, 0.3)


def failed(report) -> list[str]:
    return [c.detail for c in report.checks if not c.ok]


async def test_a_good_target_is_usable_and_what_it_announces_is_told():
    report = await report_of(target())
    assert report.usable and failed(report) == []
    assert report.announces["patch"] is True and report.announces["filter_max_results"] == 200


async def test_no_trailing_slash_is_told_but_does_not_make_it_unusable():
    report = await report_of(target(), base_url="https://jira.lan/scim/v2")
    assert report.usable and "no trailing slash" in failed(report)[0]


async def test_a_1_1_connector_at_a_2_0_target_is_told_the_wrong_version():
    report = await report_of(target(), base_url="https://jira.lan/scim/", scim_version="1.1")
    assert not report.usable and "wrong SCIM version" in failed(report)[0] and 'scim_version: "2.0"' in \
        failed(report)[0]


@pytest.mark.parametrize("answer, words", [
    (httpx.Response(401, json={}), "refused the credentials"),
    (httpx.Response(200, text="<html><form>login</form></html>", headers={"content-type": "text/html"}),
     "HTML instead of SCIM"),
    (httpx.Response(415, json={}), "media type"),
])
async def test_each_failure_is_told_in_plain_words(answer, words):
    report = await report_of(target({"/ServiceProviderConfig": answer}))
    assert not report.usable and words in failed(report)[0]


async def test_a_hanging_target_times_out_and_the_report_says_so():
    async def hang(request):
        await asyncio.sleep(30)
    started = asyncio.get_running_loop().time()
    report = await report_of(target({"/ServiceProviderConfig": hang}))
    assert asyncio.get_running_loop().time() - started < 5
    assert not report.usable and "timeout" in failed(report)[0]


async def test_a_tls_failure_is_named():
    async def tls(request):
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    report = await report_of(target({"/ServiceProviderConfig": tls}))
    assert "TLS failed" in failed(report)[0]


async def test_no_groups_matters_only_when_groups_are_pushed():
    no_groups = {"/Groups": httpx.Response(404, json={})}
    assert (await report_of(target(no_groups))).usable
    report = await report_of(target(no_groups), push_groups=["Everyone"])
    assert not report.usable and "push_groups cannot work" in " ".join(failed(report))


class FakeOktaSide:
    def __init__(self, missing_app=False):
        self.missing_app = missing_app

    async def get(self, path, params=None):
        if self.missing_app and path.endswith(APP):
            raise OktaNotFoundError("okta GET /api/v1/apps/{id} -> 404", 404)
        from okta_bridge.okta_client import OktaPage
        return OktaPage({"status": "ACTIVE", "signOnMode": "AUTO_LOGIN"} if path.endswith(APP) else [], {}, 200)

    async def find_groups_named(self, name):
        return []


async def test_the_okta_side_names_a_missing_app_and_an_unknown_pushed_group():
    report = await report_of(target(), push_groups=["Ghosts"])
    await check_okta(app_connector(APP, "jira", push_groups=["Ghosts"]), FakeOktaSide(missing_app=True), report)
    details = failed(report)
    assert any("404: not found in Okta" in d for d in details) and any("Ghosts" in d for d in details)


# ------------------------------------------------------------------ bad input: exit 2, a clear message


@pytest.fixture
def connectors(tmp_path, monkeypatch):
    path = tmp_path / "connectors.yaml"
    path.write_text(CONNECTORS)
    monkeypatch.setenv("CONNECTORS_FILE", str(path))
    monkeypatch.setenv("OKTA_ORG_URL", "https://acme.okta.com")
    return path


@pytest.mark.parametrize("args", [
    ["test-connector", "nosuchapp"],
    ["guard", "release", "nosuchapp"],
    ["guard", "held", "nosuchapp"],
    ["drift", "--app", "nosuchapp"],
    ["audit", "--app", "nosuchapp"],
    ["audit", "--user", "not-a-login"],
    ["audit", "--since", "yesterday-ish"],
    ["guard", "release", "jira", "--user", "../../users/x"],
    ["guard", "discard", "jira"],  # without --yes
])
def test_bad_input_exits_2_with_a_clear_message(connectors, args):
    run = CliRunner().invoke(bridgectl, args)
    assert run.exit_code == 2, run.output
    assert "bridgectl:" in run.output and "Traceback" not in run.output


def test_releasing_a_guard_that_is_not_set_exits_2(connectors, monkeypatch):
    import bridgectl.guard as guard_cmd

    class NotSet:
        def __init__(self, *a):
            pass

        async def is_set(self, app_id):
            return False

    @contextlib.asynccontextmanager
    async def no_db():
        yield None
    monkeypatch.setattr(guard_cmd, "MongoGuards", NotSet)
    monkeypatch.setattr(guard_cmd, "mongo", no_db)
    run = CliRunner().invoke(bridgectl, ["guard", "release", "jira"])
    assert run.exit_code == 2 and "not set" in run.output


def test_every_command_takes_json():
    import click
    import typer.main

    root = typer.main.get_command(bridgectl)
    missing = []

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        elif not any("--json" in p.opts for p in cmd.params):
            missing.append(" ".join(path))
    walk(root, [])
    assert missing == []


def test_status_json_says_where_each_part_comes_from(connectors, monkeypatch):
    import bridgectl.status as status_cmd

    async def gather(connectors):
        return {"sources": {"poller": "MongoDB"}, "problems": []}
    monkeypatch.setattr(status_cmd, "gather", gather)
    run = CliRunner().invoke(bridgectl, ["status", "--json"])
    assert run.exit_code == 0 and json.loads(run.output)["sources"]["poller"] == "MongoDB"


def test_the_project_installs_bridgectl():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["bridgectl"] == "bridgectl.app:main"


# ------------------------------------------------------------------ preview: the bridge's own planning, nothing sent


async def test_preview_builds_the_requests_with_the_bridges_code_and_sends_no_write():
    from bridgectl.oneuser import DryRun, plan_now
    from okta_bridge.contracts import PlanAction
    from scim_dispatcher.adapters.scim_client import ScimClient
    from scim_dispatcher.handlers import Dispatcher
    from tests.unit.fakes import FakeOkta, okta_user

    writes_reaching_the_target = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            writes_reaching_the_target.append(request.method)
        return httpx.Response(200, json={"schemas": [LIST20], "totalResults": 0, "Resources": []},
                              headers={"content-type": "application/scim+json"})
    app = app_connector(APP, "jira", password_on_create="random")
    okta = FakeOkta()
    okta.assign(APP, okta_user("00u1xxxxxxxxxxxxxxxx"), username="ann.jira")
    plan, why = await plan_now(app, "00u1xxxxxxxxxxxxxxxx", okta, 7, "https://acme.okta.com")
    assert plan.action is PlanAction.UPSERT and plan.version == 7 and "assigned" in why
    dry = DryRun(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    client = ScimClient(httpx.AsyncClient(transport=dry), app.base_url, app.version)
    outcome = await Dispatcher({APP: app}, {APP: client}).apply(plan, None)
    assert writes_reaching_the_target == []
    [create] = dry.recorded
    assert create["method"] == "POST" and create["body"]["userName"] == "ann.jira"
    assert create["body"]["password"] == "***"
    assert [r["method"] for r in dry.sent] == ["GET"]  # the lookup before a create reached the target
    assert outcome.step.value == "applied"


async def test_preview_of_an_unassigned_user_is_a_deactivation():
    from bridgectl.oneuser import plan_now
    from okta_bridge.contracts import PlanAction
    from tests.unit.fakes import FakeOkta, okta_user

    okta = FakeOkta({"00u1xxxxxxxxxxxxxxxx": okta_user("00u1xxxxxxxxxxxxxxxx")})
    plan, why = await plan_now(app_connector(APP, "jira"), "00u1xxxxxxxxxxxxxxxx", okta, 2, "https://acme.okta.com")
    assert plan.action is PlanAction.DEACTIVATE and why == "not assigned to the app"


async def test_an_unknown_login_is_bad_input():
    import typer

    from bridgectl.oneuser import UnknownUser, _or_exit, resolve_user

    class NoSuchUser:
        async def get(self, path, params=None):
            raise OktaNotFoundError("okta GET /api/v1/users/{id} -> 404", 404)
    with pytest.raises(UnknownUser) as unknown:  # the console shows it as a 400
        await resolve_user(NoSuchUser(), "nobody@example.com")
    assert "nobody" not in str(unknown.value)
    with pytest.raises(typer.Exit) as caught:  # bridgectl: exit 2
        await asyncio.to_thread(_or_exit, resolve_user(NoSuchUser(), "nobody@example.com"))
    assert caught.value.exit_code == 2
