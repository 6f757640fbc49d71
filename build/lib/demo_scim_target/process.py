"""Run the target as a real subprocess for integration tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class RunningTarget:
    process: subprocess.Popen
    host: str
    port: int
    token: str
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def scim_v1_url(self) -> str:
        return f"{self.base_url}/scim/v1"

    @property
    def scim_v2_url(self) -> str:
        return f"{self.base_url}/scim/v2"

    def tenant_url(self, tenant: str, version: str = "v2") -> str:
        """The SCIM base URL of a tenant: ``…/t/{tenant}/scim/{version}``."""
        return f"{self.base_url}/t/{tenant}/scim/{version}"

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def start_target(port: int | None, token: str, extra_args: Sequence[str] = (), *,
                 host: str = "127.0.0.1", timeout: float = 20.0) -> Iterator[RunningTarget]:
    """Start ``python -m demo_scim_target`` (port None/0 = pick a free one), wait until
    /health answers, yield a RunningTarget, terminate the process on exit."""
    port = port or free_port(host)
    log_file = tempfile.NamedTemporaryFile(prefix="demo_scim_target_", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "demo_scim_target", "--host", host, "--port", str(port),
           "--token", token, *extra_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    target = RunningTarget(proc, host, port, token, Path(log_file.name))
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"demo_scim_target exited with {proc.returncode}:\n{target.output()}")
            try:
                if httpx.get(f"{target.base_url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"demo_scim_target did not answer within {timeout}s:\n{target.output()}")
            time.sleep(0.1)
        yield target
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log_file.close()
