import asyncio

from translator.main import build

asyncio.run(build().run())
