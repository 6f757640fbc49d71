#!/usr/bin/env python3
"""Container entrypoint of the okta-onprem-bridge image: turns mounted secret files into environment variables,
then replaces itself with the command (``exec``), so the service receives the container's signals directly.

The services read their secrets (``RABBITMQ_URL``, ``OKTA_API_TOKEN``, a connector's ``value_env`` such as
``DEMO_TARGET_TOKEN``) from the environment only. Compose and Kubernetes hand secrets over as files, so every
file in ``$BRIDGE_SECRETS_DIR`` (default ``/run/secrets``) whose name is a valid environment variable name
(``[A-Z_][A-Z0-9_]*``) becomes that variable, its content stripped of the trailing newline. A variable already set
in the environment is kept (an explicit ``environment:`` entry wins). Values are never printed.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def load_secrets(directory: Path, environ: dict[str, str]) -> list[str]:
    """Set ``environ[NAME]`` from ``directory/NAME`` for each such file; return the names set."""
    loaded: list[str] = []
    if not directory.is_dir():
        return loaded
    for path in sorted(directory.iterdir()):
        if not _NAME.match(path.name) or path.name in environ or not path.is_file():
            continue
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:  # e.g. a host file mode the non-root user cannot read
            print(f"bridge-entrypoint: cannot read secret {path.name}: {exc.strerror}", file=sys.stderr)
            raise SystemExit(78) from None
        environ[path.name] = value
        loaded.append(path.name)
    return loaded


def main(argv: list[str]) -> None:
    if not argv:
        print("bridge-entrypoint: no command given", file=sys.stderr)
        raise SystemExit(64)
    env = dict(os.environ)
    load_secrets(Path(env.get("BRIDGE_SECRETS_DIR", "/run/secrets")), env)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main(sys.argv[1:])
