"""What the benchmark runs on: a fresh MongoDB-wire server of its own, a temporary RabbitMQ vhost, an OTLP sink for
the services' traces, the bridge as processes (each with its own Prometheus port), and the counters read around a
phase: CPU and peak RSS per process, MongoDB commands per service, Okta calls per bucket."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from tests.faults.nodes import SecantusNode
from tests.harness.devstack import DevStack, free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVICES = ("queue_poller", "translator", "scim_dispatcher", "audit_recorder")


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:  # nearest rank
        return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]

    return {"n": len(ordered), "p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": ordered[-1]}


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------------------------------------------------ processes

def cpu_seconds(pid: int) -> float | None:
    try:
        after = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(after[11]) + int(after[12])) / CLK_TCK


def machine_idle() -> float:
    """Idle CPU seconds of the whole machine so far (all cores; /proc/stat's idle + iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[3]) + int(fields[4])) / CLK_TCK


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def rabbitmq_pid() -> int | None:
    """The machine's RabbitMQ node (the oldest ``rabbit`` Erlang VM): read-only, for its CPU."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if "beam.smp" in cmd and "-s rabbit boot" in cmd and "faults" not in cmd:
                    found.append(int(entry.name))
    return min(found) if found else None


@dataclass
class Marks:
    """CPU seconds of named processes at named moments."""
    pids: dict[str, int]
    _at: dict[str, tuple[float, dict[str, float | None]]] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self._at[name] = (time.monotonic(), {n: cpu_seconds(p) for n, p in self.pids.items()})

    def restarted(self, name: str, pid: int) -> None:
        """A process started after the marks so far: its CPU counts from 0 (it had used none before them)."""
        self.pids[name] = pid
        for _, values in self._at.values():
            values[name] = 0.0

    def seconds(self, start: str, end: str) -> dict[str, float | None]:
        (_, a), (_, b) = self._at[start], self._at[end]
        return {n: (None if a.get(n) is None or b.get(n) is None else round(b[n] - a[n], 3)) for n in self.pids}

    def wall(self, start: str, end: str) -> float:
        return self._at[end][0] - self._at[start][0]


# ------------------------------------------------------------------------------------------------------- infrastructure

class Database:
    """A fresh MongoDB-wire server (SecantusDB, the fault suite's :class:`SecantusNode`) started for this run, on its
    own port and storage: a long-used one is several times slower. ``BENCH_MONGODB_URL`` measures against another
    server instead (a production MongoDB)."""

    def __init__(self, workdir: Path) -> None:
        self.external = os.environ.get("BENCH_MONGODB_URL")
        self.workdir = workdir / "mongo"
        self.node = SecantusNode(self.workdir)

    @property
    def url(self) -> str:
        return self.external or self.node.url

    def start(self) -> None:
        if not self.external:
            self.node.start()

    def stop(self) -> None:
        self.node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self.node.process.pid if self.node.process else None


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


class Vhost:
    def __init__(self, tag: str) -> None:
        self.name = f"bench-{tag}-{uuid.uuid4().hex[:6]}"
        parts = urlsplit(RABBITMQ_URL)
        self.url = urlunsplit((parts.scheme, parts.netloc, "/" + self.name, "", ""))

    def __enter__(self) -> Vhost:
        _ctl("add_vhost", self.name)
        _ctl("set_permissions", "-p", self.name, urlsplit(RABBITMQ_URL).username or "guest", ".*", ".*", ".*")
        return self

    def __exit__(self, *exc) -> None:
        with suppress(Exception):
            _ctl("delete_vhost", self.name)


class Sink:
    """The OTLP receiver the services export their traces to (production tracing: the figures include it)."""

    def __init__(self) -> None:
        self.port, self.process = free_port(), None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        dump = ["--dump", os.environ["BENCH_SPANS_FILE"]] if os.environ.get("BENCH_SPANS_FILE") else []
        self.process = subprocess.Popen([sys.executable, "-m", "tests.otlp_sink", "--port", str(self.port), *dump],
                                        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/stats", 30, self.process)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.endpoint}/stats", timeout=5).json()

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)


# -------------------------------------------------------------------------------------------------------------- stack

class Stack(DevStack):
    """The DevStack with a Prometheus port per service (its MongoDB command counter) and traces to the sink."""

    ports: dict[str, int]

    def start_one(self, module: str, name: str | None = None, **env: str) -> None:
        name = name or module
        self.ports = getattr(self, "ports", {})
        self.ports[name] = free_port()
        self.start_service(module, name, env={"METRICS_PORT": str(self.ports[name]), "DISPATCHER_METRICS_PORT": "0",
                                              **env})

    def start_all(self, dispatchers: int = 1, **env: str) -> None:
        self.start_one("audit_recorder", **env)
        wait_http(f"{self.audit_url}/healthz", 60, self.processes["audit_recorder"].proc)
        self.start_one("translator", **env)
        for i in range(dispatchers):
            self.start_one("scim_dispatcher", f"scim_dispatcher-{i}", **env)
        self.start_one("queue_poller", **env)

    def pids(self) -> dict[str, int]:
        return {n: p.proc.pid for n, p in self.processes.items() if p.proc is not None and p.alive()}

    def mongo_commands(self) -> dict[str, dict[str, float]]:
        """Per service: MongoDB commands sent so far, by command name."""
        out = {}
        for name, port in getattr(self, "ports", {}).items():
            if name in self.processes and self.processes[name].alive():
                with suppress(httpx.HTTPError):
                    out[name] = _commands(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        return out


_COMMAND = re.compile(r'^bridge_mongodb_commands_total\{command="([^"]+)"\} ([0-9.e+]+)$', re.MULTILINE)


def _commands(text: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in _COMMAND.finditer(text)}


def command_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, dict[str, int]]:
    out = {}
    for service, counts in after.items():
        delta = {c: int(n - before.get(service, {}).get(c, 0)) for c, n in counts.items()}
        out[service] = {c: n for c, n in delta.items() if n}
    return out


def connector(stack: DevStack, app_id: str, max_concurrency: int, name: str = "bench",
              base: str | None = None) -> dict[str, Any]:
    return {"okta_app_id": app_id, "name": name, "base_url": base or f"{stack.target_url}/scim/v2/",
            "auth": {"type": "header", "value_env": "DEMO_TARGET_TOKEN", "value_prefix": "Bearer "},
            "timeout_s": 30, "max_concurrency": max_concurrency}


class WriteLog:
    """The target's request log, pulled incrementally (it keeps a bounded number of entries)."""

    def __init__(self, target, since: int = 0) -> None:
        self.target, self.seq, self.entries = target, since, []

    async def pull(self) -> list[dict]:
        new = await self.target.requests(since=self.seq)
        if new:
            self.seq = max(e["seq"] for e in new)
            self.entries.extend(new)
        return new


def json_default(value: Any) -> Any:
    return str(value)


def dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=json_default))


def tempdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


async def until(check, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
