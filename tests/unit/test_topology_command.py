"""The topology command, the per-service RabbitMQ permissions and the services that start without the SCIM secrets."""

from __future__ import annotations

import re

import pytest

from okta_bridge.connectors import ConnectorsFileError, load_connectors
from typer.testing import CliRunner

from bridgectl.app import app as bridgectl
from okta_bridge.topology import permissions_for

CONNECTORS = """apps:
  - okta_app_id: 0oaPermTest000000001
    name: perm
    base_url: http://127.0.0.1:9/scim/v2
    auth: {type: header, value_env: UNIT_UNSET_SCIM_TOKEN, value_prefix: "Bearer "}
    pool: hr
"""


@pytest.fixture
def connectors(tmp_path, monkeypatch):
    path = tmp_path / "connectors.yaml"
    path.write_text(CONNECTORS)
    monkeypatch.delenv("UNIT_UNSET_SCIM_TOKEN", raising=False)
    monkeypatch.setenv("CONNECTORS_FILE", str(path))
    return path


def test_only_the_dispatcher_needs_the_scim_secrets(connectors):
    with pytest.raises(ConnectorsFileError, match="UNIT_UNSET_SCIM_TOKEN is not set"):
        load_connectors(connectors)  # the dispatcher's load: the secret is required
    assert load_connectors(connectors, secrets=False).apps[0].name == "perm"


def test_the_translator_starts_without_the_scim_secrets(connectors, monkeypatch):
    import translator.main as translator_main

    monkeypatch.setattr(translator_main, "setup_logging", lambda name: None)
    monkeypatch.setattr(translator_main, "setup_tracing", lambda name: None)
    monkeypatch.setenv("OKTA_ORG_URL", "https://acme.okta.com")  # required (no default)
    monkeypatch.setenv("OKTA_API_TOKEN", "unit-test-token")
    monkeypatch.setenv("OKTA_API_TOKEN_ID", "00Tunit0000000000001")
    monkeypatch.delenv("OKTA_CLIENT_ID", raising=False)
    assert translator_main.build() is not None  # builds without connecting; the secret is never read


def test_the_poller_loads_the_connectors_without_secrets():
    """The poller's main connects at once, so this reads its one call of load_connectors."""
    import inspect

    import queue_poller.main as poller_main

    calls = re.findall(r"load_connectors\(([^)]*)\)", inspect.getsource(poller_main.main))
    assert calls == ["base.connectors_file, secrets=False"]


def test_permissions_give_each_service_only_its_own_exchanges_and_queues():
    p = permissions_for(["default", "hr"])
    ok = lambda regex, name: re.fullmatch(regex, name) is not None  # noqa: E731 - RabbitMQ anchors with ^…$
    for role, permission in p.items():
        if role != "bridge-topology":
            assert permission.configure == "^$", role  # nobody but the topology command declares
    assert ok(p["bridge-dispatcher"].read, "dispatcher.hr.p007") and ok(p["bridge-dispatcher"].read, "dispatcher.hr")
    assert not ok(p["bridge-dispatcher"].read, "dispatcher.other.p000")
    assert not ok(p["bridge-dispatcher"].read, "translator.work")
    assert ok(p["bridge-dispatcher"].write, "bridge.plans.retry.15s") and ok(p["bridge-dispatcher"].write, "bridge.events")
    assert not ok(p["bridge-dispatcher"].write, "amq.default")
    assert not ok(p["bridge-poller"].write, "bridge.plans") and ok(p["bridge-poller"].write, "bridge.events")
    assert not ok(p["bridge-poller"].read, "translator.work")
    assert ok(p["bridge-translator"].read, "translator.work") and not ok(p["bridge-translator"].read, "audit.records")
    assert ok(p["bridge-audit"].read, "audit.records") and not ok(p["bridge-audit"].write, "bridge.plans")
    assert ok(p["bridge-operator"].read, "bridge.dead-letters") and not ok(p["bridge-operator"].read, "audit.records")
    # the web console: the operator's rights (it does from its pages what bridgectl does), as a user of its own
    console = p["bridge-console"]
    assert console == p["bridge-operator"]
    for exchange in ("bridge.events", "bridge.plans", "bridge.audit"):
        assert ok(console.write, exchange), exchange
    for name in ("amq.default", "bridge.dlx", "bridge.plans.retry.1s", "bridge.plans.hold"):
        assert not ok(console.write, name), name
    assert ok(console.read, "bridge.dead-letters")
    for queue in ("translator.work", "audit.records", "dispatcher.hr.p000", "plans.hr.hold"):
        assert not ok(console.read, queue), queue
    for name in ("translator.work.retry.1s", "dispatcher.hr.p000", "plans.hr.hold", "bridge.dlx", "audit.records"):
        assert ok(p["bridge-topology"].configure, name), name


def test_the_permissions_command_prints_rabbitmqctl_lines_for_the_connectors_pools(connectors):
    run = CliRunner().invoke(bridgectl, ["topology", "permissions", "--vhost", "bridge"])
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    assert len(lines) == 7 and all(line.startswith("rabbitmqctl set_permissions -p bridge bridge-") for line in lines)
    users = [line.split()[4] for line in lines]
    assert users == ["bridge-topology", "bridge-poller", "bridge-translator", "bridge-dispatcher", "bridge-audit",
                     "bridge-operator", "bridge-console"]
    console = next(line for line in lines if " bridge-console " in line)
    assert console.endswith(r"'^$' '^(bridge\.events|bridge\.plans|bridge\.audit)$' '^(bridge\.dead\-letters)$'")
    dispatcher = next(line for line in lines if " bridge-dispatcher " in line)
    assert r"^dispatcher\.(hr)(\.p[0-9]{3})?$" in dispatcher


def test_the_readme_documents_the_permissions_the_code_grants():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for user, permission in permissions_for(["default"]).items():
        assert permission.command(user, "/") in readme, f"README: the permissions of {user} are stale"
