import asyncio

from okta_bridge.entry import run_service
from queue_poller.main import main

run_service("queue-poller", lambda: asyncio.run(main()))
