"""The audit batcher: full batches are written at once and exactly at the configured size; a partial tail waits for
the delay; a failed write fails every record in its batch."""

import asyncio


from audit_recorder.batcher import Batcher


async def test_full_batches_are_cut_at_the_size_even_when_records_arrive_before_the_write_starts():
    written: list[int] = []

    async def write(docs):
        written.append(len(docs))

    batcher = Batcher(write, max_size=10, max_delay_s=3600)
    adds = [asyncio.ensure_future(batcher.add({"i": i})) for i in range(30)]
    await asyncio.wait_for(asyncio.gather(*adds), timeout=5)
    assert written == [10, 10, 10]


async def test_a_partial_batch_waits_for_the_delay_then_is_written():
    written: list[int] = []

    async def write(docs):
        written.append(len(docs))

    batcher = Batcher(write, max_size=10, max_delay_s=0.3)
    adds = [asyncio.ensure_future(batcher.add({"i": i})) for i in range(13)]
    await asyncio.sleep(0.05)
    assert written == [10]
    await asyncio.wait_for(asyncio.gather(*adds), timeout=5)
    assert written == [10, 3]


async def test_a_failed_write_fails_each_record_of_its_batch():
    async def write(docs):
        raise RuntimeError("database down")

    batcher = Batcher(write, max_size=2, max_delay_s=3600)
    results = await asyncio.gather(batcher.add({"i": 1}), batcher.add({"i": 2}), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert batcher.batches == 0
