from queue_poller.main import main
import asyncio

asyncio.run(main())
