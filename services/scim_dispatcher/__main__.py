import asyncio

from scim_dispatcher.main import build

asyncio.run(build().run())
