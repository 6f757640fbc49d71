"""A RabbitMQ node and a MongoDB-wire (SecantusDB) node of the fault suite's own, on their own ports, so that the
suite can restart them; the machine's shared broker and database are never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness.devstack import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RabbitNode:
    workdir: Path
    port: int = 0
    dist_port: int = 0

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.dist_port = self.dist_port or free_port()
        self.name = f"faults{self.port}@localhost"
        # the server runs as the rabbitmq user: its directory must be reachable by it (pytest's tmp is root-only)
        self.workdir = Path(tempfile.mkdtemp(prefix="bridge-faults-rabbit-"))
        self.workdir.chmod(0o755)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "RABBITMQ_NODENAME": self.name, "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.workdir / "log"), "RABBITMQ_PID_FILE": str(self.workdir / "pid"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq")}

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "enabled_plugins").write_text("[].\n")
        (self.workdir / "rabbitmq.conf").write_text(f"listeners.tcp.default = {self.port}\nloopback_users = none\n")
        if shutil.which("chown") and _user_exists("rabbitmq"):  # the server drops to the rabbitmq user
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.workdir)], check=True)
        self._launch()

    def _ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["rabbitmqctl", "-n", self.name, *args], env=self._env(), capture_output=True,
                              text=True, timeout=timeout)

    def _wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ctl("await_startup", timeout=timeout).returncode == 0:
                return
            time.sleep(0.5)
        raise TimeoutError(f"RabbitMQ node {self.name} did not start")

    def _launch(self) -> None:
        subprocess.run(["rabbitmq-server", "-detached"], env=self._env(), check=True, capture_output=True)
        self._wait()

    def restart(self) -> None:
        """The broker process stops and a new one starts on the same data directory: every connection drops; durable
        queues and the messages they hold survive."""
        self._ctl("stop", str(self.workdir / "pid"), timeout=120)  # with the pid file: returns once the OS process ends
        self._launch()

    def stop(self) -> None:
        self._ctl("stop", str(self.workdir / "pid"), timeout=60)
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class SecantusNode:
    workdir: Path
    port: int = 0
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        binary = ROOT / ".venv-secantus" / "bin" / "secantusd-py"
        log = (self.workdir / "secantus.log").open("ab")
        self.process = subprocess.Popen([str(binary), "--host", "127.0.0.1", "--port", str(self.port),
                                         "--storage-path", str(self.workdir / "data")], stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        from pymongo import MongoClient

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with MongoClient(self.url, serverSelectionTimeoutMS=1000) as client:
                    client.admin.command("ping")
                    return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.3)
        raise TimeoutError("SecantusDB node did not start")

    def restart(self) -> None:
        """Killed (SIGKILL) and started again on the same port and storage."""
        self.stop(kill=True)
        self.start()

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(30)


def _user_exists(name: str) -> bool:
    try:
        import pwd

        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
