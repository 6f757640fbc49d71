"""Baselines measured in the same run as the bridge: the broker alone (3 hops of durable quorum queues, persistent
messages, publisher confirms, each hop its own process) and the database alone (single and batched writes, and the
single-document operations one change cost before batching)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import aio_pika

from tests.bench.infra import percentiles


def ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


# ------------------------------------------------------------------------------------------------- broker baseline

async def _forward(url: str, src: str, dst: str, prefetch: int, ready) -> None:
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.get_queue(src)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await channel.default_exchange.publish(
            aio_pika.Message(message.body, message_id=message.message_id,
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=dst)
        await message.ack()

    await queue.consume(on_message)
    ready.set()
    await asyncio.Future()


def forwarder_main(url: str, src: str, dst: str, prefetch: int, ready) -> None:
    """One hop (consume ``src``, publish to ``dst`` with a confirm, then ack), in its own process like a service."""
    with suppress(KeyboardInterrupt):
        asyncio.run(_forward(url, src, dst, prefetch, ready))


async def rabbit_baseline(url: str, messages: int, rate: float, paced_seconds: float, prefetch: int,
                          in_flight: int, payload: int) -> dict[str, Any]:
    queues = ["bench.q1", "bench.q2", "bench.q3"]
    connection = await aio_pika.connect(url)
    ctx = mp.get_context("spawn")
    workers: list[Any] = []
    try:
        setup = await connection.channel()
        for name in queues:
            await setup.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        for src, dst in zip(queues, queues[1:]):
            ready = ctx.Event()
            proc = ctx.Process(target=forwarder_main, args=(url, src, dst, prefetch, ready), daemon=True)
            proc.start()
            workers.append(proc)
            if not await asyncio.to_thread(ready.wait, 60):
                raise RuntimeError("a baseline forwarder did not start")

        received: dict[int, float] = {}
        sent: dict[int, float] = {}
        done = asyncio.Event()
        expected = {"n": 0}
        sink = await connection.channel()
        await sink.set_qos(prefetch_count=prefetch)

        async def on_final(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received[int(message.message_id)] = time.time()
            await message.ack()
            if len(received) >= expected["n"]:
                done.set()

        await (await sink.get_queue(queues[-1])).consume(on_final)
        pub = await connection.channel(publisher_confirms=True)
        body = b"x" * payload
        slots = asyncio.Semaphore(in_flight)

        async def publish(i: int) -> None:
            async with slots:
                sent[i] = time.time()
                await pub.default_exchange.publish(
                    aio_pika.Message(body, message_id=str(i), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queues[0])

        async def run(ids: list[int], pace: float | None) -> dict[str, Any]:
            expected["n"] += len(ids)
            done.clear()
            t0 = time.time()
            tasks = []
            for k, i in enumerate(ids):
                if pace:
                    delay = t0 + k / pace - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(publish(i)))
            await asyncio.gather(*tasks)
            published = time.time()
            await asyncio.wait_for(done.wait(), 300)
            lat = [received[i] - sent[i] for i in ids]
            first, last = min(sent[i] for i in ids), max(received[i] for i in ids)
            return {"messages": len(ids), "msgs_per_s": round(len(ids) / (last - first), 1),
                    "publish_rate_per_s": round(len(ids) / max(published - t0, 1e-6), 1),
                    "latency_ms": {k: (round(ms(v), 2) if isinstance(v, float) else v)
                                   for k, v in percentiles(lat).items()}}

        bulk = await run(list(range(messages)), None)
        n_paced = int(rate * paced_seconds)
        paced = await run(list(range(messages, messages + n_paced)), rate) if n_paced else None
        return {"hops": 3, "queue_type": "quorum", "persistent": True, "publisher_confirms": True,
                "prefetch": prefetch, "publisher_in_flight": in_flight, "payload_bytes": payload,
                "bulk": bulk, "paced": paced, "paced_rate": rate}
    finally:
        for proc in workers:  # only the forwarders this function started
            proc.terminate()
            proc.join(10)
        await connection.close()


# --------------------------------------------------------------------------------------------------- db baseline

async def mongo_baseline(url: str, db_name: str, singles: int, batched: int, batch_size: int, concurrency: int,
                         seconds: float) -> dict:
    """Each measure stops at its document count or after ``seconds``, whichever comes first."""
    from pymongo import AsyncMongoClient, ReturnDocument, UpdateOne

    client: AsyncMongoClient = AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=10_000,
                                                w="majority", journal=True)
    db = client[db_name]
    coll = db["raw"]

    def doc(i: int) -> dict:  # about the size and shape of an audit record
        return {"at": datetime.now(UTC), "service": "bench", "step": "applied", "org": "https://bench",
                "event_uuid": uuid.uuid4().hex, "okta_user_id": f"00u{i:017d}", "app_id": "0oabench0000000000",
                "trace_id": uuid.uuid4().hex, "detail": "bench record " + "x" * 120, "n": i}

    async def timed(workers: int, limit: int, work) -> tuple[float, int]:
        """``workers`` concurrent loops calling ``work(i)`` until ``limit`` items or the time box; items/s."""
        counter = {"next": 0}
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            while counter["next"] < limit and time.perf_counter() < deadline:
                i = counter["next"]
                counter["next"] += 1
                await work(i)

        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(workers)))
        return counter["next"] / (time.perf_counter() - t0), counter["next"]

    async def one(i: int) -> None:
        await coll.insert_one(doc(i))

    async def batch(i: int) -> None:
        await coll.insert_many([doc(i * batch_size + j) for j in range(batch_size)], ordered=False)

    async def change(i: int) -> None:
        # The single-document operations one change cost before batching (audit excluded): assignment upsert,
        # plan-version find_one_and_update, assignment read, link read, conditional link upsert.
        k = f"https://bench|0oabench|00u{i:017d}"
        await db.assignments.update_one({"_id": k}, {"$set": {"assigned": True, "n": i}}, upsert=True)
        await db.plan_versions.find_one_and_update({"_id": k}, {"$inc": {"v": 1}}, upsert=True,
                                                   return_document=ReturnDocument.AFTER)
        await db.assignments.find_one({"_id": k})
        await db.links.find_one({"_id": k})
        await db.links.update_one({"_id": k, "applied_version": {"$lt": 1}},
                                  {"$set": {"applied_version": 1, "target_id": str(i)}}, upsert=True)

    async def bulk_update(i: int) -> None:  # a bulk_write of batch_size updates by _id
        await db.bulk.bulk_write([UpdateOne({"_id": f"k{i}-{j}"}, {"$set": {"n": j}}, upsert=True)
                                  for j in range(batch_size)], ordered=False)

    try:
        await coll.insert_one(doc(-1))  # connection and collection exist before timing
        single, n_single = await timed(1, singles, one)
        concurrent, n_conc = await timed(concurrency, singles, lambda i: one(singles + i))
        many, n_batches = await timed(1, max(1, batched // batch_size), batch)
        mix, n_mix = await timed(64, singles, change)
        bulk, n_bulk = await timed(1, max(1, batched // batch_size), bulk_update)
        return {"insert_one_per_s": round(single, 1), "insert_one_docs": n_single,
                "bulk_update_docs_per_s": round(bulk * batch_size, 1), "bulk_update_docs": n_bulk * batch_size,
                "insert_one_concurrent_per_s": round(concurrent, 1), "insert_one_concurrent_docs": n_conc,
                "concurrency": concurrency,
                "insert_many_docs_per_s": round(many * batch_size, 1), "insert_many_docs": n_batches * batch_size,
                "batch_size": batch_size,
                "pipeline_op_mix_changes_per_s": round(mix, 1), "pipeline_op_mix_changes": n_mix,
                "pipeline_op_mix_concurrency": 64, "pipeline_op_mix_ops_per_change": 5, "time_box_s": seconds}
    finally:
        await client.drop_database(db_name)
        await client.close()


