"""Process entry: configuration errors end the process with one clear line and exit code 2, not a traceback."""

from __future__ import annotations

import sys
from typing import Callable

from okta_bridge.apiauth import ApiTokensError
from okta_bridge.connectors import ConnectorsFileError
from okta_bridge.stores.meta import OrgMismatchError
from okta_bridge.topology import TopologyMissing

__all__ = ["run_service"]


def run_service(name: str, main: Callable[[], object]) -> None:
    try:
        main()
    except (ConnectorsFileError, OrgMismatchError, TopologyMissing, ApiTokensError) as exc:
        print(f"{name}: cannot start: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
