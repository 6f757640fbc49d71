"""Starts the whole bridge as real processes for the demo, the end-to-end tests and the benchmark:
the Okta simulator, the demo SCIM target and the four services, each with its own log file.

Only what it started is stopped. The services get their configuration through the same environment variables
and connectors file a real deployment uses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

__all__ = ["DevStack", "ServiceProcess", "free_port", "wait_http"]

SERVICES = ("audit_recorder", "translator", "scim_dispatcher", "queue_poller")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@dataclass
class ServiceProcess:
    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def alive(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class DevStack:
    """Simulator + demo target + the four services. Call ``start_fixtures`` then ``start_services``."""

    workdir: Path
    rabbitmq_url: str = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
    mongodb_url: str = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
    mongodb_db: str = "okta_bridge"
    plan: str = "generous"
    token: str = "sim-api-token-0001"
    token_id: str = "00Tbridge00000000001"
    target_token: str = "demo-target-token"
    extra_env: dict[str, str] = field(default_factory=dict)
    sim_port: int = field(default_factory=free_port)
    target_port: int = field(default_factory=free_port)
    audit_port: int = field(default_factory=free_port)
    audit_health_port: int = field(default_factory=free_port)
    audit_token: str = "devstack-audit-reader-0001"  # API_TOKENS of the audit API (role reader)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    source_root: Path | None = None  # run the services from another copy of the code (the fault suite's broken builds)
    oauth_client_id: str | None = None  # set by use_oauth(): the services authenticate as an OAuth 2.0 service app
    # per process (``queue_poller``, ``translator``, ``scim_dispatcher``, ``audit_recorder``, ``cli``, ``topology``):
    # its own RabbitMQ user's URL. Set: the topology command declares everything first (as ``topology``) and the
    # services only check it (BROKER_DECLARE=false), as in production. Empty: one user, the services declare.
    broker_urls: dict[str, str] = field(default_factory=dict)
    # per service process: the METRICS_PORT it serves /healthz, /readyz and /metrics on (as a deployment does)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    console_port: int = field(default_factory=free_port)
    console_admin_token: str = "devstack-console-admin-0001"  # API_TOKENS entry of role admin (the console's)
    # set by use_console_oidc(): the console's OIDC web app in the simulator (client id, secret)
    console_client: tuple[str, str] | None = None

    @property
    def okta_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def target_url(self) -> str:
        return f"http://127.0.0.1:{self.target_port}"

    @property
    def audit_url(self) -> str:
        return f"http://127.0.0.1:{self.audit_port}"

    @property
    def audit_headers(self) -> dict[str, str]:
        """What ``GET /audit`` needs: the reader token."""
        return {"Authorization": f"Bearer {self.audit_token}"}

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    @property
    def audit_health_url(self) -> str:
        return f"http://127.0.0.1:{self.audit_health_port}/healthz"

    def _spawn(self, name: str, module: str, env: dict[str, str], args: list[str] | None = None) -> ServiceProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        process = ServiceProcess(name, module, env, self.workdir / f"{name}.log")
        if args:
            process.module = module + "\0" + "\0".join(args)
        self.processes[name] = process
        _start(process)
        return process

    def use_oauth(self, dpop: bool = True, client_id: str = "0oabridgeservice0001") -> None:
        """Before ``start_fixtures``: the simulator registers a service app (its public key, every scope the bridge
        asks for, DPoP as asked) and the services authenticate with its private key instead of the SSWS token (which
        the simulator still accepts, for the tests' own reads)."""
        from okta_bridge.jose import generate_rsa_key

        self.workdir.mkdir(parents=True, exist_ok=True)
        key = generate_rsa_key(2048, kid="bridge-e2e")
        (self.workdir / "oauth-key.json").write_text(json.dumps(key.private_jwk()))
        scopes = ["okta.logs.read", "okta.users.read", "okta.apps.read", "okta.groups.read", "okta.apps.manage"]
        (self.workdir / "oauth-client.json").write_text(json.dumps(
            {"client_id": client_id, "jwks": {"keys": [key.public_jwk()]}, "scopes": scopes, "dpop": dpop}))
        self.oauth_client_id = client_id
        self.extra_env.update({"OKTA_CLIENT_ID": client_id, "OKTA_DPOP": "true" if dpop else "false",
                               "OKTA_PRIVATE_KEY_FILE": str(self.workdir / "oauth-key.json"), "OKTA_API_TOKEN": ""})

    def use_console_oidc(self, client_id: str = "0oaconsoleweb0000001",
                         secret: str = "devstack-console-client-secret-0001") -> None:
        """Before ``start_fixtures``: the simulator registers the console as an OIDC web app (its redirect URI, the
        ``okta-bridge-*`` groups in the groups claim) and the console signs people in with it."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "console-oidc-client.json").write_text(json.dumps({
            "client_id": client_id, "client_secret": secret, "redirect_uris": [f"{self.console_url}/oidc/callback"],
            "post_logout_redirect_uris": [f"{self.console_url}/login"], "groups_claim_filter": "okta-bridge-.*"}))
        self.console_client = (client_id, secret)

    def start_console(self, env: dict[str, str] | None = None) -> ServiceProcess:
        """The console (``python -m bridge_console``) on ``console_port``: API_TOKENS with the audit reader and an
        admin token, sign-in with Okta when ``use_console_oidc`` was called."""
        oidc = {"CONSOLE_OIDC_CLIENT_ID": self.console_client[0],
                "CONSOLE_OIDC_CLIENT_SECRET": self.console_client[1]} if self.console_client else {}
        process = self.start_service("bridge_console", "console", {
            "CONSOLE_PORT": str(self.console_port), "CONSOLE_PUBLIC_URL": self.console_url,
            "API_TOKENS": f"devstack:reader:{self.audit_token},console-admin:admin:{self.console_admin_token}",
            **oidc, **(env or {})})
        wait_http(f"{self.console_url}/login", 60, process.proc)
        return process

    def start_fixtures(self, target_args: list[str] | None = None) -> None:
        env = self.base_env()
        oauth = ["--oauth-client", str(self.workdir / "oauth-client.json")] if self.oauth_client_id else []
        if self.console_client:
            oauth += ["--oidc-client", str(self.workdir / "console-oidc-client.json")]
        sim = self._spawn("okta-simulator", "okta_simulator", env, [
            "--port", str(self.sim_port), "--plan", self.plan, "--token", f"{self.token}:{self.token_id}",
            "--org-url", self.okta_url, *oauth])
        target = self._spawn("demo-target", "demo_scim_target", env, [
            "--port", str(self.target_port), "--token", self.target_token, *(target_args or [])])
        wait_http(f"{self.okta_url}/_admin/health", 30, sim.proc)
        wait_http(f"{self.target_url}/health", 30, target.proc)

    def write_connectors(self, apps: list[dict[str, Any]]) -> Path:
        path = self.workdir / "connectors.yaml"
        path.write_text(yaml.safe_dump({"apps": apps}, sort_keys=False))
        return path

    def base_env(self) -> dict[str, str]:
        services_dir = self.source_root or Path(__file__).resolve().parents[2]
        paths = [str(services_dir / "shared"), str(services_dir / "services"), os.environ.get("PYTHONPATH", "")]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "PYTHONUNBUFFERED": "1"}

    def service_env(self, name: str) -> dict[str, str]:
        return {
            **self.base_env(),
            "RABBITMQ_URL": self.broker_urls.get(name, self.rabbitmq_url),
            **({"BROKER_DECLARE": "false"} if self.broker_urls else {}),
            "MONGODB_URL": self.mongodb_url, "MONGODB_DB": self.mongodb_db,
            "CONNECTORS_FILE": str(self.workdir / "connectors.yaml"),
            "OKTA_ORG_URL": self.okta_url, "OKTA_API_TOKEN": self.token, "OKTA_API_TOKEN_ID": self.token_id,
            "AUDIT_PORT": str(self.audit_port), "AUDIT_HEALTH_PORT": str(self.audit_health_port),
            "API_TOKENS": f"devstack:reader:{self.audit_token}",
            # only the dispatcher (and the operator commands) hold the targets' secrets: the others start without them
            **({} if name in ("queue_poller", "translator", "audit_recorder")
               else {"DEMO_TARGET_TOKEN": self.target_token}),
            "OTEL_SERVICE_NAME": name.replace("_", "-"), "DISPATCHER_METRICS_PORT": "0",
            **({"OTEL_TRACES_EXPORTER": "none"} if "OTEL_EXPORTER_OTLP_ENDPOINT" not in self.extra_env else {}),
            # the tests' receivers (tests/otlp_sink.py, tests/e2e/otlp_receiver.py) speak OTLP/HTTP, whatever the
            # environment running the tests says
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            **self.extra_env,
        }

    def start_service(self, module: str, name: str | None = None, env: dict[str, str] | None = None) -> ServiceProcess:
        name = name or module
        own = {"DISPATCHER_REPLICA": name} if module == "scim_dispatcher" else {}  # owners in the partition state
        port = self.metrics_ports.setdefault(name, free_port())
        process = self._spawn(name, module, {**self.service_env(module), **own, "METRICS_PORT": str(port),
                                             **(env or {})})
        if (env or {}).get("METRICS_PORT"):  # the caller chose the port (the benchmark)
            self.metrics_ports[name] = int(env["METRICS_PORT"])
        return process

    def metrics_url(self, name: str, path: str = "/metrics") -> str:
        """``/metrics``, ``/healthz`` or ``/readyz`` of a service process started by this stack."""
        return f"http://127.0.0.1:{self.metrics_ports[name]}{path}"

    def apply_topology(self) -> None:
        """``bridgectl topology apply`` as the topology user (compose's one-shot ``topology`` job)."""
        done = subprocess.run([sys.executable, "-m", "bridgectl", "topology", "apply"],
                              env=self.service_env("topology"), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"topology apply failed: {done.stderr}")

    def start_services(self, dispatchers: int = 1) -> None:
        if self.broker_urls:
            self.apply_topology()
        self.start_service("audit_recorder")
        wait_http(self.audit_health_url, 60, self.processes["audit_recorder"].proc)
        # the API listens once the recorder is connected, after its health port: wait for it too (401 is an answer)
        wait_http(f"{self.audit_url}/audit", 60, self.processes["audit_recorder"].proc)
        self.start_service("translator")
        for i in range(dispatchers):
            self.start_service("scim_dispatcher", f"scim_dispatcher-{i}" if dispatchers > 1 else None)
        self.start_service("queue_poller")

    def restart(self, name: str) -> None:
        _start(self.processes[name])

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            # the fixtures get a short grace: a request a test left hanging (a slow-answer fault) would hold a
            # graceful shutdown for the fault's whole delay
            self.processes[name].stop(3.0 if name in ("okta-simulator", "demo-target") else 20.0)

    def logs(self) -> str:
        return "\n".join(f"===== {n} =====\n{p.output()[-6000:]}" for n, p in self.processes.items())


def _start(process: ServiceProcess) -> None:
    module, *args = process.module.split("\0")
    log = process.log_path.open("ab")
    process.proc = subprocess.Popen([sys.executable, "-m", module, *args], env=process.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
