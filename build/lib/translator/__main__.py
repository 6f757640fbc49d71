import asyncio

from okta_bridge.entry import run_service
from translator.main import build

run_service("translator", lambda: asyncio.run(build().run()))
