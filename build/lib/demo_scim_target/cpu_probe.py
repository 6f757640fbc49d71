"""CPU per SCIM request of the target, measured from outside: ``python -m demo_scim_target.cpu_probe [N] [ARGS…]``.

Starts the target as a process (ARGS go to its command line), sends N `POST /scim/v2/Users` and then N
`GET /scim/v2/Users?filter=userName eq "…"` from this process over one keep-alive connection, and reads the
target's utime + stime from `/proc/<pid>/stat` around each phase (Linux only). Prints one JSON line with
milliseconds of CPU (and of wall time) per request.
"""

from __future__ import annotations

import json
import os
import sys
import time

import httpx

from .process import start_target

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def okta_like_user(i: int) -> dict:
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"user{i}@example.com",
            "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"}, "displayName": f"Given{i} Family{i}",
            "emails": [{"primary": True, "value": f"user{i}@example.com", "type": "work"}],
            "active": True, "password": "Secret-123", "externalId": f"00u{i:017d}"}


def measure(n: int = 2000, extra_args: list[str] | None = None) -> dict:
    with start_target(None, "probe-token", extra_args or []) as target:
        pid = target.process.pid
        with httpx.Client(base_url=target.scim_v2_url, headers=target.auth_header, timeout=30) as scim:
            scim.get("/Users", params={"count": 1})
            marks = [(cpu_seconds(pid), time.monotonic())]
            for i in range(n):
                scim.post("/Users", json=okta_like_user(i)).raise_for_status()
            marks.append((cpu_seconds(pid), time.monotonic()))
            for i in range(n):
                wanted = f'userName eq "user{(i * 7919) % n}@example.com"'
                scim.get("/Users", params={"filter": wanted}).raise_for_status()
            marks.append((cpu_seconds(pid), time.monotonic()))
    per = lambda a, b, k: round((marks[b][k] - marks[a][k]) / n * 1000, 3)  # noqa: E731
    return {"n": n, "post_cpu_ms": per(0, 1, 0), "get_filter_cpu_ms": per(1, 2, 0),
            "post_wall_ms": per(0, 1, 1), "get_filter_wall_ms": per(1, 2, 1)}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, sys.argv[2:])))
