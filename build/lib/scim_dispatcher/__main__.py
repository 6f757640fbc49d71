import asyncio

from okta_bridge.entry import run_service
from scim_dispatcher.main import build

run_service("scim-dispatcher", lambda: asyncio.run(build().run()))
