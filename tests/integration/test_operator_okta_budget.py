"""An operator's Okta reads (bridgectl, the console's preview and provision) spend the org-wide budget of concurrent
Okta requests that the pollers and translators share (``OKTA_MAX_CONCURRENT_REQUESTS``): on the real MongoDB-wire
server, while a service holds the budget's only permit, the operator's request is not sent; it goes once the
permit is free, and the operator's registration is gone when its action ends."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from bridgectl.bus import okta_client
from okta_bridge.mongo import connect
from okta_bridge.permits import okta_budget
from okta_bridge.settings import OktaSettings
from okta_bridge.stores.permits import MongoPermits

pytestmark = pytest.mark.integration
MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")


async def test_an_operators_okta_request_waits_for_the_org_wide_budget(mongo_db, monkeypatch):
    arrived: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        arrived.append(request.split(b" ")[1].decode())
        body = json.dumps({"id": "00u1xxxxxxxxxxxxxxxx", "status": "ACTIVE", "profile": {}}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("MONGODB_URL", MONGODB_URL)
    monkeypatch.setenv("MONGODB_DB", mongo_db)
    settings = OktaSettings(org_url=f"http://127.0.0.1:{port}", api_token="operator-test-token",
                            max_concurrent_requests=1, request_timeout_s=3)
    client, db = connect(MONGODB_URL, mongo_db)
    service = okta_budget(MongoPermits(db, settings.org_url), "translator@test", 1, 3)
    service_stop, hold, held = asyncio.Event(), asyncio.Event(), asyncio.Event()
    renewing = asyncio.create_task(service.run(service_stop))

    async def busy_service() -> None:
        async with service.slot("requests"):
            held.set()
            await hold.wait()

    busy = asyncio.create_task(busy_service())
    try:
        await asyncio.wait_for(held.wait(), 20)  # the service holds the one permit
        async with okta_client(settings=settings) as okta:
            read = asyncio.create_task(okta.get("/api/v1/users/00u1xxxxxxxxxxxxxxxx"))
            await asyncio.sleep(3)
            assert arrived == [] and not read.done()  # nothing sent while the budget is spent
            ledger = await MongoPermits(db, settings.org_url).read("okta")
            assert any(name.startswith("operator@") for name in ledger.holders)  # it waits as a holder
            hold.set()
            await busy
            service_stop.set()
            await renewing  # the service leaves: its permit is free
            page = await asyncio.wait_for(read, 30)
            assert page.body["id"] == "00u1xxxxxxxxxxxxxxxx" and arrived == ["/api/v1/users/00u1xxxxxxxxxxxxxxxx"]
        ledger = await MongoPermits(db, settings.org_url).read("okta")
        assert not [n for n, h in ledger.holders.items() if n.startswith("operator@") and h.held.get("requests")]
    finally:
        hold.set()
        service_stop.set()
        await asyncio.gather(busy, renewing, return_exceptions=True)
        server.close()
        await client.close()
