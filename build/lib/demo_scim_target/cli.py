"""Command line: ``python -m demo_scim_target --host 127.0.0.1 --port 8050 --token T [--name jira]
[--quirk patch-204 ...] [--latency-ms 0] [--log-entries 10000]``. Every option also reads an env var
(DEMO_SCIM_HOST, DEMO_SCIM_PORT, DEMO_SCIM_TOKEN, DEMO_SCIM_NAME, DEMO_SCIM_QUIRKS comma-separated,
DEMO_SCIM_LOG_LEVEL, DEMO_SCIM_LATENCY_MS, DEMO_SCIM_LOG_ENTRIES)."""

from __future__ import annotations

import argparse
import os
import sys

from .common import QUIRKS, TargetConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="demo_scim_target",
                                     description="Demo on-prem SCIM 1.1 + 2.0 target (Jira-like)")
    parser.add_argument("--host", default=env("DEMO_SCIM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("DEMO_SCIM_PORT", "8050")))
    parser.add_argument("--token", default=env("DEMO_SCIM_TOKEN", "demo-token"))
    parser.add_argument("--name", default=env("DEMO_SCIM_NAME", "jira"))
    parser.add_argument("--quirk", action="append", choices=sorted(QUIRKS), default=None,
                        help="; ".join(f"{k}: {v}" for k, v in QUIRKS.items()))
    parser.add_argument("--log-level", default=env("DEMO_SCIM_LOG_LEVEL", "warning"))
    parser.add_argument("--latency-ms", type=int, default=int(env("DEMO_SCIM_LATENCY_MS", "0")),
                        help="every SCIM answer waits this long (asyncio.sleep); POST /_admin/config changes it")
    parser.add_argument("--log-entries", type=int, default=int(env("DEMO_SCIM_LOG_ENTRIES", "10000")),
                        help="how many requests the request log keeps (GET /_admin/requests)")
    args = parser.parse_args(argv)
    if args.quirk is None:
        args.quirk = [q.strip() for q in env("DEMO_SCIM_QUIRKS", "").split(",") if q.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from .app import create_app

    args = parse_args(argv)
    try:
        config = TargetConfig(token=args.token, name=args.name, quirks=frozenset(args.quirk),
                              latency_ms=args.latency_ms, log_entries=args.log_entries)
    except ValueError as exc:
        print(f"demo_scim_target: {exc}", file=sys.stderr)
        return 2
    print(f"demo_scim_target '{args.name}' on http://{args.host}:{args.port} "
          f"(scim/v1, scim/v2, t/TENANT/scim/v1|v2, _admin) quirks={sorted(config.quirks)} "
          f"latency_ms={config.latency_ms} log_entries={config.log_entries}", flush=True)
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level)
    return 0
