"""``GET /healthz`` (alive), ``GET /readyz`` (ready) and ``GET /metrics`` (Prometheus text) of a service process, on
``METRICS_PORT`` (0: off), unauthenticated and without personal data: what compose healthchecks, Kubernetes probes and
Prometheus call.

One small Starlette app per process, served by a uvicorn server on the service's own event loop (a task beside its
consumers, no thread): ``/healthz`` answering at all proves the loop runs; ``/readyz`` runs the process's named checks
(:class:`Readiness`): the broker connection up and its consumers' channels open, MongoDB answering a ``ping``, and
each service's own role (a poller leading or standing by, a dispatcher owning partitions or waiting for them). Every
check is cheap and bounded (a ``ping`` is cached for a second, with a 2 s timeout), so probes cost nothing on the
hot path. Why not FastStream's ``AsgiFastStream``/``make_ping_asgi``: the services consume through aio-pika channels
of their own (:mod:`okta_bridge.bus`, for batching), the poller and the audit-recorder run no FastStream app, and a
broker ping knows nothing of MongoDB, the poller lease or partitions; the same server in every process is simpler.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import time
from typing import Any, Awaitable, Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["HealthServer", "Readiness", "broker_check", "channels_check", "create_app", "mongo_check",
           "serve_health"]

log = logging.getLogger(__name__)
Check = Callable[[], "tuple[bool, str] | Awaitable[tuple[bool, str]]"]


class Readiness:
    """Named checks; ready when every one passes. A check returns ``(ok, detail)``; the detail is a short state
    (``connected``, ``leading``, ``owning 3 partition(s)``), never a URL, an id or a person's data. Until the service
    marks itself started it is not ready."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self.started = False

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def evaluate(self) -> tuple[bool, dict[str, str]]:
        if not self.started:
            return False, {"service": "starting"}
        out: dict[str, str] = {}
        ready = True
        for name, check in self._checks.items():
            try:
                result = check()
                ok, detail = await result if inspect.isawaitable(result) else result
            except Exception as exc:  # noqa: BLE001 - a failing check means not ready, with the error's kind
                ok, detail = False, type(exc).__name__
            out[name] = detail
            ready = ready and ok
        return ready, out


def broker_check(connection: Any) -> Check:
    """The aio-pika robust connection is up: not closed, and connected (cleared the moment the socket drops; set
    again once it reconnected)."""
    def check() -> tuple[bool, str]:
        if connection.is_closed:
            return False, "closed"
        connected = getattr(connection, "connected", None)
        if connected is not None and not connected.is_set():
            return False, "reconnecting"
        return True, "connected"
    return check


def channels_check(channels: Callable[[], list[Any]]) -> Check:
    """The consumers' channels are open (a channel the broker closed consumes nothing until restored)."""
    def check() -> tuple[bool, str]:
        items = [c for c in channels() if c is not None]
        closed = sum(1 for c in items if c.is_closed)
        return (closed == 0, f"{len(items) - closed}/{len(items)} open")
    return check


def mongo_check(client: Any, timeout_s: float = 2.0, cache_s: float = 1.0) -> Check:
    """MongoDB answers a ``ping`` within ``timeout_s``; the answer is reused for ``cache_s`` (probes from several
    places do not multiply the round trips)."""
    last: dict[str, Any] = {"at": -1e9, "result": (False, "unknown")}

    async def check() -> tuple[bool, str]:
        now = time.monotonic()
        if now - last["at"] >= cache_s:
            try:
                await asyncio.wait_for(client.admin.command("ping"), timeout_s)
                last["result"] = (True, "ok")
            except Exception as exc:  # noqa: BLE001
                last["result"] = (False, type(exc).__name__)
            last["at"] = time.monotonic()
        return last["result"]
    return check


def create_app(readiness: Readiness) -> Starlette:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(_: Request) -> Response:
        ready, checks = await readiness.evaluate()
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)])


class HealthServer:
    """The uvicorn server of :func:`create_app` as a task on the running loop; :meth:`stop` ends it."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task) -> None:
        self._server, self._task = server, task

    async def stop(self) -> None:
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, 5)
        except (asyncio.TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down anyway
            self._task.cancel()


async def serve_health(port: int, readiness: Readiness, host: str = "0.0.0.0") -> HealthServer | None:
    """Serves health and metrics on ``port`` (all interfaces); 0: off. A port already taken is logged, not fatal
    (the service works; its probes will fail and say so)."""
    if not port:
        return None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        log.warning("health/metrics port %d not available (%s): off", port, exc)
        return None
    sock.listen(128)
    sock.setblocking(False)
    server = uvicorn.Server(uvicorn.Config(create_app(readiness), log_level="warning", lifespan="off",
                                           access_log=False))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign] # the service owns its signals
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    log.info("health and metrics on :%d (/healthz, /readyz, /metrics)", port)
    return HealthServer(server, task)
