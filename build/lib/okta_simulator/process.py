"""Run the simulator as a real subprocess (`sys.executable -m okta_simulator ...`) for tests and benchmarks."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

_SERVICES_DIR = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class RunningSimulator:
    base_url: str
    port: int
    pid: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, base_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"okta_simulator exited early with code {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/_admin/health", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"okta_simulator did not answer on {base_url} within {timeout}s")


@contextlib.contextmanager
def start_simulator(port: int | None = None, plan: str = "generous", tokens: list[str] | None = None,
                    token_share: float = 0.5, host: str = "127.0.0.1",
                    timeout: float = 15.0, max_url_bytes: int | None = None) -> Iterator[RunningSimulator]:
    """Start the simulator on `port` (a free one if None); `tokens` are 'VALUE:00Tid' strings."""
    port = port or free_port()
    base_url = f"http://{host}:{port}"
    cmd = [sys.executable, "-m", "okta_simulator", "--host", host, "--port", str(port), "--plan", plan,
           "--token-share", str(token_share), "--org-url", base_url]
    if max_url_bytes is not None:
        cmd += ["--max-url-bytes", str(max_url_bytes)]
    for token in tokens or ["test-token:00Tsimulator0000001"]:
        cmd += ["--token", token]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_SERVICES_DIR, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, env=env)
    try:
        _wait_ready(proc, base_url, timeout)
        yield RunningSimulator(base_url, port, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
