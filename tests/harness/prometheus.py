"""Debian's ``prometheus`` (scripts/deps.sh installs it) run against a live DevStack: it scrapes every service's
``/metrics`` (METRICS_PORT) and RabbitMQ's rabbitmq_prometheus plugin, so the Grafana dashboard's queries
(deploy/grafana/dashboards/okta-bridge.json) can be evaluated through Prometheus's HTTP API. Grafana itself is not
installable here; the queries are what matters (a renamed metric or a wrong label breaks a panel silently)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from tests.harness.devstack import DevStack, free_port

__all__ = ["DASHBOARD", "Prometheus", "check_compose_config", "close_broker_connections", "dashboard_queries"]

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "okta-bridge.json"
RABBITMQ_PROMETHEUS_PORT = 15692


def check_compose_config() -> None:
    """compose's deploy/prometheus/prometheus.yml is a valid Prometheus configuration (``promtool check config``)."""
    config = DASHBOARD.parents[2] / "prometheus" / "prometheus.yml"
    done = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError(f"{config}: {done.stdout}{done.stderr}")


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    panels = json.loads(path.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


class Prometheus:
    def __init__(self, stack: DevStack, workdir: Path) -> None:
        self.stack, self.workdir, self.port = stack, workdir, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict:
        jobs: dict[str, list[str]] = {}
        for name, port in self.stack.metrics_ports.items():
            if name in self.stack.processes and self.stack.processes[name].alive():
                jobs.setdefault(self.stack.processes[name].module.replace("_", "-"), []).append(f"127.0.0.1:{port}")
        rabbit = f"{urlsplit(self.stack.rabbitmq_url).hostname or '127.0.0.1'}:{RABBITMQ_PROMETHEUS_PORT}"
        scrape = [{"job_name": job, "static_configs": [{"targets": targets}]} for job, targets in sorted(jobs.items())]
        scrape += [{"job_name": "rabbitmq", "static_configs": [{"targets": [rabbit]}]},
                   {"job_name": "rabbitmq-queues", "metrics_path": "/metrics/detailed",
                    "params": {"family": ["queue_coarse_metrics"]}, "static_configs": [{"targets": [rabbit]}]}]
        return {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": scrape}

    def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("the prometheus binary is missing: scripts/deps.sh installs Debian's prometheus package")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        log = (self.workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir}/tsdb",
                                         f"--web.listen-address=127.0.0.1:{self.port}"],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def wait_scraped(self, scrapes: int = 3, timeout: float = 30.0) -> None:
        """Until every target is up and has been scraped ``scrapes`` times more (rate() needs two samples)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-2000:]}")
            try:
                targets = httpx.get(f"{self.url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.2)
                continue
            if targets and all(t["health"] == "up" for t in targets):
                time.sleep(scrapes * 1.0 + 0.5)
                return
            time.sleep(0.2)
        raise TimeoutError(f"not every target is up: {[(t['labels']['job'], t['health'], t['lastError']) for t in targets]}")

    def query(self, expr: str) -> list[dict]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        if answer.get("status") != "success":
            raise AssertionError(f"{expr}: {answer.get('error')}")
        return answer["data"]["result"]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _broker_ports_of(pid: int, broker_port: int = 5672) -> set[int]:
    """Local ports of the process's TCP connections to the broker (from /proc: no extra tool needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == broker_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def close_broker_connections(pid: int) -> int:
    """Closes, on the broker's side (``rabbitmqctl close_connection``), every AMQP connection of the process: what
    a broker restart or a network cut does to it. Returns how many were closed."""
    ports = _broker_ports_of(pid)
    # the table form names each connection as close_connection wants it (<rabbit@host.N.N.N>; JSON does not)
    listed = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "peer_port"],
                            capture_output=True, text=True, timeout=60, check=True)
    closed = 0
    for line in listed.stdout.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].isdigit() and int(fields[1]) in ports:
            subprocess.run(["rabbitmqctl", "-q", "close_connection", fields[0], "readiness test"],
                           capture_output=True, timeout=60, check=True)
            closed += 1
    return closed
