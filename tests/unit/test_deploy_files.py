"""The deployment files: ``compose.yaml``, ``Dockerfile``, ``.dockerignore``, ``deploy/``.

``compose.yaml`` is validated against the Compose specification's JSON schema,
``tests/fixtures/compose-spec.json``, a copy of ``schema/compose-spec.json`` from the compose-spec/compose-spec
repository (Apache-2.0), with a Draft 7 validator. The rest checks what the schema cannot: every module compose
runs exists, every setting the services read is set (or has a default that works inside a container), secrets
come from files and reach the services that need them, and the image runs the installed project as non-root.
No Docker is needed: these tests read the files only.

The web console (``python -m bridge_console``) is checked as every service is, and compose's settings for it against
its documented ones (docs/deploy.md, "The web console").
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"
BRIDGE_MODULES = ("queue_poller", "translator", "scim_dispatcher", "audit_recorder", "bridge_console")
DEMO_MODULES = ("okta_simulator", "demo_scim_target")
JOB_MODULES = ("bridgectl",)  # one-shot jobs the services wait for
# bridge modules written in a parallel branch and not merged here yet: checks that import them wait for them
DEMO_OIDC_CLIENT = ROOT / "deploy" / "demo" / "console-oidc-client.json"
_INTERP = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# ------------------------------------------------------------------ helpers

def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` with nothing set on the host (so: the defaults), and ``$$`` -> ``$``."""
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if not isinstance(value, str):
        return value
    parts = value.split("$$")
    return "$".join(_INTERP.sub(lambda m: m.group("arg") or "", p) for p in parts)


def _services() -> dict[str, dict[str, Any]]:
    return _interpolate(_compose())["services"]


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def _module(service: dict[str, Any]) -> str | None:
    match = re.search(r"python -m ([A-Za-z_][A-Za-z0-9_.]*)", _command(service))
    return match.group(1) if match else None


def _bridge_services() -> dict[str, str]:
    """compose service name -> the bridge module it runs (the services and the console, not the demo fixtures)."""
    return {name: _module(svc) for name, svc in _services().items() if _module(svc) in BRIDGE_MODULES}


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; comments dropped, backslash continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    out = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last_from:]


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for ins, args in _final_stage():
        if ins == "ENV":
            for token in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
                env[token[0]] = token[1].strip('"')
    return env


def _env_of(service: dict[str, Any]) -> dict[str, str]:
    """What the process sees: the image's ENV, the service's environment and its secrets (by target name)."""
    env = dict(_image_env())
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({k: str(v) for k, v in environment.items() if v is not None})
    for secret in service.get("secrets") or []:
        target = secret if isinstance(secret, str) else secret.get("target", secret["source"])
        env[Path(target).name] = f"<secret {secret if isinstance(secret, str) else secret['source']}>"
    return env


def _settings_classes(module: str) -> list[type[BaseSettings]]:
    main = importlib.import_module(f"{module}.main")
    return [v for v in vars(main).values()
            if isinstance(v, type) and issubclass(v, BaseSettings) and v is not BaseSettings]


def _needs_value(default: Any) -> bool:
    """A default that cannot work in a container: loopback addresses, an empty secret, a relative file path."""
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
        if default == "":
            return True
    if not isinstance(default, str):
        return False
    return "127.0.0.1" in default or "localhost" in default or default.endswith((".yaml", ".yml"))


# ------------------------------------------------------------------ compose.yaml against the spec

def test_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    for document in (_compose(), _interpolate(_compose())):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_compose_has_no_version_key_and_needs_no_host_variable() -> None:
    raw = COMPOSE.read_text().replace("$$", "")  # `$${X}` is for the container's shell, not compose
    assert "version" not in _compose()
    for match in _INTERP.finditer(raw):
        assert match.group("op") in (":-", "-"), f"${{{match.group('name')}}} has no default: plain `up` would fail"


# ------------------------------------------------------------------ the processes compose runs

def test_every_module_compose_runs_is_an_importable_package_with_a_main() -> None:
    modules = {name: _module(svc) for name, svc in _services().items() if "build" in svc or "okta-onprem-bridge" in
               str(svc.get("image", ""))}
    assert set(modules.values()) == set(BRIDGE_MODULES + DEMO_MODULES + JOB_MODULES), modules
    for name, module in modules.items():
        assert importlib.util.find_spec(module) is not None, f"{name}: no package {module}"
        assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{name}: `python -m {module}` has no __main__"


def test_the_topology_job_runs_first_and_the_services_only_check_it() -> None:
    """Compose declares the topology once, as a one-shot job every bridge service waits for; the services run with
    BROKER_DECLARE=false (passive checks, no configure right needed)."""
    services = _services()
    job = services["topology"]
    assert _command(job) == "python -m bridgectl topology apply" and job["restart"] == "no"
    assert job["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert {s["target"] for s in job["secrets"]} == {"RABBITMQ_URL"}  # no Okta token, no SCIM secret
    for name in _bridge_services():
        assert services[name]["depends_on"]["topology"]["condition"] == "service_completed_successfully", name
        assert _env_of(services[name])["BROKER_DECLARE"] == "false", name


def test_infrastructure_images_and_the_demo_profile() -> None:
    services = _services()
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.13-management")
    assert services["mongodb"]["image"] == "mongo:7"
    assert services["jaeger"]["image"].startswith("jaegertracing/all-in-one:")
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    jaeger_ports = {p.rsplit(":", 1)[-1] for p in services["jaeger"]["ports"]}
    assert {"16686", "4317", "4318"} <= jaeger_ports
    for name in ("okta-simulator", "demo-target"):
        assert services[name]["profiles"] == ["demo"]
    assert services["scim-dispatcher"]["deploy"]["replicas"] >= 2
    assert "container_name" not in services["scim-dispatcher"], "replicas need generated container names"


def test_mongodb_is_a_one_node_replica_set_initiated_by_its_healthcheck() -> None:
    mongo = _services()["mongodb"]
    command = mongo["command"]
    replset = command[command.index("--replSet") + 1]
    script = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate" in script and f"_id: '{replset}'" in script and "host: 'mongodb:27017'" in script
    assert "isWritablePrimary" in script, "healthy only once the node is primary"
    for name in _bridge_services():
        url = urlsplit(_env_of(_services()[name])["MONGODB_URL"])
        assert url.hostname == "mongodb"
        assert parse_qs(url.query)["replicaSet"] == [replset]


def test_healthchecks_and_dependencies() -> None:
    services = _services()
    for name in ("rabbitmq", "mongodb", "audit-recorder", "okta-simulator", "demo-target"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if spec["condition"] == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no check"
            if services[dep].get("profiles") and not svc.get("profiles"):
                assert spec.get("required") is False, f"{name} would need --profile for {dep}"
    for name in _bridge_services():
        deps = services[name]["depends_on"]
        assert deps["rabbitmq"]["condition"] == deps["mongodb"]["condition"] == "service_healthy", name
    assert services["audit-recorder"]["environment"]["AUDIT_HOST"] == "0.0.0.0"
    for name in _bridge_services():  # readiness on the port every service serves health and metrics on
        port = _env_of(services[name])["METRICS_PORT"]
        assert f"127.0.0.1:{port}/readyz" in " ".join(services[name]["healthcheck"]["test"]), name
    assert "/_admin/health" in " ".join(services["okta-simulator"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["demo-target"]["healthcheck"]["test"])


def test_observability_profile_scrapes_every_service_and_rabbitmq_and_provisions_the_dashboard() -> None:
    services = _services()
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["observability"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in _bridge_services():
        [sd] = jobs[name]["dns_sd_configs"]  # every replica of the service
        assert sd["names"] == [name] and str(sd["port"]) == _env_of(services[name])["METRICS_PORT"], name
    assert jobs["rabbitmq"]["static_configs"][0]["targets"] == ["rabbitmq:15692"]
    assert jobs["rabbitmq-queues"]["params"]["family"] == ["queue_coarse_metrics"]
    assert "rabbitmq_prometheus" in " ".join(services["rabbitmq"]["entrypoint"])
    mounts = {m["target"]: m["source"] for m in services["grafana"]["volumes"] if isinstance(m, dict)}
    dashboards = ROOT / mounts["/var/lib/grafana/dashboards"]
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    provider = yaml.safe_load((provisioning / "dashboards" / "okta-bridge.yaml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    dashboard = json.loads((dashboards / "okta-bridge.json").read_text())
    used = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert used == {source["uid"]} and source["url"] == "http://prometheus:9090"


def test_okta_oauth_settings_pass_through_and_unset_ones_mean_ssws(monkeypatch) -> None:
    """compose passes the service-app settings through from the host (empty when unset) and the private key as a
    secret; with nothing set on the host the services still authenticate with the SSWS token."""
    from okta_bridge.okta_auth import SswsAuth, build_auth
    from okta_bridge.settings import OktaSettings

    compose = _interpolate(_compose())
    assert (ROOT / compose["secrets"]["okta_private_key"]["file"]).read_text() == ""
    for name in ("queue-poller", "translator", "console"):
        env = _env_of(compose["services"][name])
        assert env["OKTA_PRIVATE_KEY"] == "<secret okta_private_key>", name
        for var in ("OKTA_CLIENT_ID", "OKTA_KEY_ID", "OKTA_DPOP", "OKTA_SCOPES"):
            assert var in env, f"{name}: {var} is not passed through"
        for var in ("OKTA_CLIENT_ID", "OKTA_KEY_ID", "OKTA_DPOP", "OKTA_SCOPES", "OKTA_ORG_URL", "OKTA_API_TOKEN_ID",
                    "OKTA_ALLOW_INSECURE_HTTP"):
            monkeypatch.setenv(var, env[var])
        monkeypatch.setenv("OKTA_API_TOKEN", "demo-token")
        monkeypatch.setenv("OKTA_PRIVATE_KEY", "")  # the demo's empty key file
        assert isinstance(build_auth(OktaSettings(), ("okta.logs.read",)), SswsAuth), name
    raw = COMPOSE.read_text()
    for var in ("OKTA_CLIENT_ID", "OKTA_KEY_ID", "OKTA_SCOPES", "OKTA_PRIVATE_KEY_FILE", "OKTA_DPOP"):
        assert "${" + var + ":-" in raw, f"{var} comes from the host's env file"


def test_published_ports_bind_to_loopback_only() -> None:
    for name, svc in _services().items():
        for port in svc.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} would listen on every interface"


# ------------------------------------------------------------------ the web console

def _secret_source(service: dict[str, Any], target: str) -> str:
    return next(s["source"] for s in service["secrets"] if s["target"] == target)


def test_the_console_runs_from_the_image_with_its_settings_its_port_and_the_audit_apis_tokens() -> None:
    """The console's documented settings (docs/deploy.md, "The web console"), checked here until its package is
    merged (then its settings classes are read as every service's are)."""
    services = _services()
    console = services["console"]
    env = _env_of(console)
    assert _command(console) == "python -m bridge_console"
    assert (console["image"], console["build"]) == (services["translator"]["image"], services["translator"]["build"])
    assert env["CONSOLE_HOST"] == "0.0.0.0" and env["CONSOLE_PORT"] == "8090"
    assert console["ports"] == ["127.0.0.1:8090:8090"]
    assert "127.0.0.1:9100/readyz" in " ".join(console["healthcheck"]["test"]) and env["METRICS_PORT"] == "9100"
    public = urlsplit(env["CONSOLE_PUBLIC_URL"])
    assert (public.scheme, public.port, public.path) == ("http", 8090, "")
    assert public.hostname in env["API_ALLOWED_HOSTS"].split(",")
    assert {"127.0.0.1", "localhost", "console"} <= set(env["API_ALLOWED_HOSTS"].split(","))
    assert env["CONSOLE_ADMIN_GROUPS"] == "okta-bridge-admins" and env["CONSOLE_VIEWER_GROUPS"] == "okta-bridge-viewers"
    assert env["CONSOLE_OIDC_GROUPS_CLAIM"] == "groups"
    assert int(env["CONSOLE_ACTIONS_PER_MINUTE"]) == 10 and int(env["CONSOLE_SESSION_TTL_S"]) == 3600
    # a trace id opens compose's Jaeger UI, as published on the host
    template = urlsplit(env["CONSOLE_TRACE_URL_TEMPLATE"])
    assert template.path == "/trace/{trace_id}" and f"127.0.0.1:{template.port}:16686" in services["jaeger"]["ports"]
    # secrets: the audit API's tokens sign in too; the Okta read credentials are the translator's; the OIDC client
    # secret is its own; none is an environment entry
    assert _secret_source(console, "API_TOKENS") == _secret_source(services["audit-recorder"], "API_TOKENS")
    assert _secret_source(console, "RABBITMQ_URL") == "rabbitmq_url"
    for var in ("OKTA_API_TOKEN", "OKTA_PRIVATE_KEY"):
        assert _secret_source(console, var) == _secret_source(services["translator"], var)
    assert _secret_source(console, "CONSOLE_OIDC_CLIENT_SECRET") == "console_oidc_client_secret"
    for var in ("API_TOKENS", "RABBITMQ_URL", "OKTA_API_TOKEN", "CONSOLE_OIDC_CLIENT_SECRET"):
        assert var not in console["environment"], var
    # the demo's tokens (deploy/demo-secrets/README.md): one to read, one to act
    from okta_bridge.apiauth import ApiTokens

    tokens = ApiTokens.parse((ROOT / _interpolate(_compose())["secrets"]["audit_api_tokens"]["file"]).read_text().strip())
    readme = (ROOT / "deploy" / "demo-secrets" / "README.md").read_text()
    for token, role in (("demo-audit-reader-token-change-me", "reader"), ("demo-console-operator-token-change-me",
                                                                          "operator")):
        assert token in readme and tokens.check(token).role == role, token
    deps = console["depends_on"]
    assert deps["audit-recorder"]["condition"] == "service_healthy"
    assert deps["okta-simulator"] == {"condition": "service_healthy", "required": False}  # the demo's OIDC issuer


def test_the_demo_simulator_registers_the_console_as_its_oidc_client() -> None:
    compose = _interpolate(_compose())
    services = compose["services"]
    console, simulator = services["console"], services["okta-simulator"]
    env = _env_of(console)
    client = json.loads(DEMO_OIDC_CLIENT.read_text())
    assert {"client_id", "client_secret", "redirect_uris", "groups_claim_filter"} <= set(client) <= {
        "client_id", "client_secret", "redirect_uris", "groups_claim_filter", "post_logout_redirect_uris"}
    path = re.search(r"--oidc-client (\S+)", _command(simulator)).group(1)
    mount = next(m for m in simulator["volumes"] if isinstance(m, dict) and m["target"] == path)
    assert (ROOT / mount["source"]).resolve() == DEMO_OIDC_CLIENT.resolve() and mount["read_only"]
    assert env["CONSOLE_OIDC_CLIENT_ID"] == client["client_id"]
    secret = compose["secrets"][_secret_source(console, "CONSOLE_OIDC_CLIENT_SECRET")]["file"]
    assert (ROOT / secret).read_text().strip() == client["client_secret"]
    assert f"{env['CONSOLE_PUBLIC_URL']}/oidc/callback" in client["redirect_uris"]
    for group in (env["CONSOLE_ADMIN_GROUPS"], env["CONSOLE_VIEWER_GROUPS"]):  # the filter lets the roles through
        assert re.fullmatch(client["groups_claim_filter"], group), group
    assert "CONSOLE_OIDC_ISSUER" not in env and f"--org-url {env['OKTA_ORG_URL']} " in _command(simulator)
    # unset on the host: the demo's client; set to empty in the env file: OIDC off (`-`, not `:-`)
    assert "${CONSOLE_OIDC_CLIENT_ID-" in COMPOSE.read_text()


def test_the_deploy_guide_documents_the_consoles_settings_and_its_okta_app() -> None:
    """docs/deploy.md, "The web console": every console setting compose gives it, and the Okta app to create."""
    guide = (ROOT / "docs" / "deploy.md").read_text()
    section = guide.split("\n## The web console\n", 1)[1].split("\n## ", 1)[0]
    console = _services()["console"]
    documented = set(re.findall(r"`(CONSOLE_[A-Z_]+|API_[A-Z_]+)`", section))
    for var in _env_of(console):
        if var.startswith(("CONSOLE_", "API_")):
            assert var in documented, f"{var} is set by compose but not documented"
    for words in ("Web Application", "Authorization Code", "PKCE", "/oidc/callback", "okta-bridge-admins",
                  "okta-bridge-viewers", "Groups claim", "bridge-console", "Static tokens"):
        assert words in section, words


def test_the_simulator_accepts_the_command_compose_gives_it() -> None:
    import shlex

    from okta_simulator import cli

    command = shlex.split(_command(_services()["okta-simulator"]).split("sh -c ", 1)[1])
    argv = command[command.index("okta_simulator") + 1:]
    args = cli.parse_args(argv)  # an unknown flag or a wrong value: SystemExit
    assert str(args.org_url).startswith("http://okta-simulator:8040")
    assert "/etc/okta-simulator/console-oidc-client.json" in str(args.oidc_client)


# ------------------------------------------------------------------ configuration and secrets

@pytest.mark.parametrize("module", BRIDGE_MODULES)
def test_every_setting_a_service_reads_is_set_or_sensibly_defaulted(module: str) -> None:
    services = {name: svc for name, svc in _services().items() if _module(svc) == module}
    assert services, f"no compose service runs {module}"
    source = Path(importlib.util.find_spec(f"{module}.main").origin).read_text()
    for name, svc in services.items():
        env = _env_of(svc)
        for cls in _settings_classes(module):
            prefix = cls.model_config.get("env_prefix", "")
            for field_name, field in cls.model_fields.items():
                if not re.search(rf"\.{field_name}\b", source):
                    continue  # read by the settings class, never used by this service (the dispatcher's Okta token)
                var = (prefix + field_name).upper()
                if field.is_required() or _needs_value(field.default):
                    assert env.get(var), f"{name}: {var} must be set (default {field.default!r} cannot work)"
                if cls.__name__ == "OktaSettings" and field_name == "api_token_id":
                    assert env.get(var, "").startswith("00T"), f"{name}: {var} lets the bridge ignore its own writes"
        assert env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://jaeger:4318", name
        assert env.get("OTEL_SERVICE_NAME"), name
        for var in ("RABBITMQ_URL", "OKTA_API_TOKEN"):
            assert var not in (svc.get("environment") or {}), f"{name}: {var} is a secret, not an environment entry"


def test_connectors_file_is_mounted_valid_and_its_secrets_reach_the_services(monkeypatch) -> None:
    from okta_bridge.connectors import load_connectors

    services = _services()
    path = ROOT / "deploy" / "connectors.compose.yaml"
    monkeypatch.setenv("DEMO_TARGET_TOKEN", "test-only")
    connectors = load_connectors(path)
    [app] = connectors.apps
    url = urlsplit(app.base_url)
    assert (url.hostname, url.port, url.path) == ("demo-target", 8050, "/scim/v1/")
    assert app.version == "1.1"
    assert (app.auth.type, app.auth.header_name, app.auth.value_env, app.auth.value_prefix) == (
        "header", "Authorization", "DEMO_TARGET_TOKEN", "Bearer ")
    # the demo works without edits: the simulator in compose seeds the very app the connectors file names
    assert f"--seed-app {app.okta_app_id}:" in (ROOT / "compose.yaml").read_text()
    served: set[str] = set()
    for name, module in _bridge_services().items():
        svc = services[name]
        if "load_connectors" not in Path(
                importlib.util.find_spec(f"{module}.main").origin).read_text():
            continue
        env = _env_of(svc)
        mounts = [v for v in svc.get("volumes") or [] if isinstance(v, dict)]
        assert any(m["target"] == env["CONNECTORS_FILE"] and m.get("read_only") for m in mounts), name
        assert any(Path(m["source"]).resolve() == path.resolve() for m in mounts), name
        for connector in connectors.apps:
            for var in ("value_env", "username_env", "password_env"):
                if getattr(connector.auth, var, None):
                    # only the dispatcher writes to the targets and the console reads them (preview): the others
                    # must not hold their secrets
                    held = getattr(connector.auth, var) in env
                    assert held == (module in ("scim_dispatcher", "bridge_console")), f"{name}: {connector.name}'s {var}"
        if module == "scim_dispatcher":
            served |= {p.strip() for p in env.get("DISPATCHER_POOLS", "default").split(",")}
    assert connectors.pool_names() <= served, "a pool no dispatcher serves: its plans would wait forever"
    target = services["demo-target"]
    assert [s["target"] for s in target["secrets"]] == ["DEMO_SCIM_TOKEN"]
    assert target["secrets"][0]["source"] == next(
        s["source"] for s in services["scim-dispatcher"]["secrets"] if s["target"] == "DEMO_TARGET_TOKEN")


def test_secrets_are_files_and_the_demo_ones_agree() -> None:
    compose = _interpolate(_compose())
    secrets = compose["secrets"]
    for name, secret in secrets.items():
        assert set(secret) == {"file"}, f"secret {name} should come from a file"
        assert (ROOT / secret["file"]).is_file(), f"secret {name}: {secret['file']} is missing"
        assert "demo-secrets" in secret["file"], f"secret {name}: the default must be an obvious demo value"
    for name, svc in compose["services"].items():
        for s in svc.get("secrets") or []:
            assert (s if isinstance(s, str) else s["source"]) in secrets, f"{name}: unknown secret {s}"
    password = (ROOT / secrets["rabbitmq_password"]["file"]).read_text().strip()
    url = urlsplit((ROOT / secrets["rabbitmq_url"]["file"]).read_text().strip())
    rabbit = compose["services"]["rabbitmq"]
    assert (url.hostname, url.port, url.username, url.password) == (
        "rabbitmq", 5672, rabbit["environment"]["RABBITMQ_DEFAULT_USER"], password)
    assert "rabbitmq_password" in " ".join(rabbit["entrypoint"])
    token_id = compose["services"]["queue-poller"]["environment"]["OKTA_API_TOKEN_ID"]
    assert token_id in _command(compose["services"]["okta-simulator"]) or (
        compose["services"]["okta-simulator"]["environment"]["OKTA_API_TOKEN_ID"] == token_id)


def test_entrypoint_turns_secret_files_into_environment_variables(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "OKTA_API_TOKEN").write_text("from-file\n")
    (secrets / "KEPT").write_text("from-file")
    (secrets / "lower_case").write_text("ignored")
    script = "import json, os; print(json.dumps({k: os.environ.get(k) for k in ('OKTA_API_TOKEN', 'KEPT', 'lower_case')}))"
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "bridge-entrypoint.py"), sys.executable, "-c", script],
        env={"BRIDGE_SECRETS_DIR": str(secrets), "KEPT": "from-env", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert json.loads(result.stdout) == {"OKTA_API_TOKEN": "from-file", "KEPT": "from-env", "lower_case": None}


# ------------------------------------------------------------------ Dockerfile and .dockerignore

def test_dockerfile_installs_the_project_and_runs_as_non_root() -> None:
    instructions = _dockerfile_instructions()
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for i, a in instructions if i == "ARG" and "=" in a}
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), a).split()[0]
             for i, a in instructions if i == "FROM"]
    assert froms and all(f == "python:3.11-slim" for f in froms), froms
    runs = " ".join(a for i, a in instructions if i == "RUN")
    assert re.search(r"pip install (--\S+ )*\.(\s|$)", runs), "the project must be installed with `pip install .`"
    final = _final_stage()
    users = [a for i, a in final if i == "USER"]
    assert users, "the image must switch to a non-root USER"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    entrypoint = json.loads(next(a for i, a in final if i == "ENTRYPOINT"))
    copies = [a.split() for i, a in final if i == "COPY" and "--from" not in a]
    assert any(c[-1] in entrypoint and (ROOT / c[0]).is_file() for c in copies), "the entrypoint is copied in"
    cmd = json.loads(next(a for i, a in final if i == "CMD"))
    assert cmd[:2] == ["python", "-m"] and cmd[2] in BRIDGE_MODULES


def test_dockerignore_keeps_only_what_the_build_copies() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "an allow-list: secrets and virtualenvs can never slip into the build context"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    sources = [a.split()[:-1] for i, a in _dockerfile_instructions() if i == "COPY" and "--from" not in a]
    for source in (s for group in sources for s in group if not s.startswith("--")):
        assert source.rstrip("/") in allowed, f"COPY {source} is not in the build context"
        assert (ROOT / source).exists(), source
    assert not any("secret" in a or ".env" in a for a in allowed)
