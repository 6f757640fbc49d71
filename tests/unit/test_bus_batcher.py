"""The batcher every service gathers work with: full batches go at once and exactly at the size; a partial batch
waits at most the wait; while a flush runs, items gather into the next batch; a failed flush is logged, not lost."""

from __future__ import annotations

import asyncio

from okta_bridge.bus import Batcher


async def test_full_batches_are_cut_at_the_size():
    written: list[int] = []

    async def flush(items):
        written.append(len(items))

    batcher = Batcher(flush, size=10, wait_s=3600, concurrency=3)
    for i in range(30):
        batcher.add(i)
    await asyncio.sleep(0.01)
    assert written == [10, 10, 10]


async def test_a_partial_batch_waits_for_the_wait_then_goes():
    written: list[int] = []

    async def flush(items):
        written.append(len(items))

    batcher = Batcher(flush, size=10, wait_s=0.2)
    for i in range(13):
        batcher.add(i)
    await asyncio.sleep(0.05)
    assert written == [10]
    await asyncio.sleep(0.3)
    assert written == [10, 3]


async def test_items_gather_while_a_flush_runs_and_go_together_after_it():
    gate, batches = asyncio.Event(), []

    async def flush(items):
        batches.append(list(items))
        await gate.wait()

    batcher = Batcher(flush, size=100, wait_s=0.0, concurrency=1)
    batcher.add(0)
    await asyncio.sleep(0.01)
    for i in range(1, 6):
        batcher.add(i)  # the one flush slot is busy: these wait together
    await asyncio.sleep(0.01)
    assert batches == [[0]]
    gate.set()
    await asyncio.sleep(0.01)
    assert batches == [[0], [1, 2, 3, 4, 5]]


async def test_a_failing_flush_is_logged_and_the_next_batch_still_goes(caplog):
    written: list[list[int]] = []

    async def flush(items):
        if items == [0]:
            raise RuntimeError("boom")
        written.append(items)

    batcher = Batcher(flush, size=1, wait_s=0)
    batcher.add(0)
    batcher.add(1)
    await batcher.drain()
    assert written == [[1]]
    assert "a batch of 1 failed" in caplog.text


async def test_drain_flushes_what_is_gathered():
    written: list[int] = []

    async def flush(items):
        written.extend(items)

    batcher = Batcher(flush, size=100, wait_s=3600)
    for i in range(5):
        batcher.add(i)
    await batcher.drain()
    assert written == [0, 1, 2, 3, 4]


async def test_with_a_gap_a_quiet_stream_goes_early_and_a_busy_one_lingers_for_more():
    """``gap_s``: a lone item goes once nothing followed it for the gap (a quiet service pays little latency); items
    that keep coming keep the batch open up to the wait (a busy one makes big batches)."""
    written: list[int] = []

    async def flush(items):
        written.append(len(items))

    batcher = Batcher(flush, size=1000, wait_s=3600, gap_s=0.05)
    batcher.add(0)
    await asyncio.sleep(0.2)
    assert written == [1]  # not the hour-long wait: the gap

    batcher = Batcher(flush, size=1000, wait_s=3600, gap_s=0.2)
    written.clear()
    for i in range(10):  # one every 20 ms: never a gap of 200 ms
        batcher.add(i)
        await asyncio.sleep(0.02)
    assert written == []
    await asyncio.sleep(0.4)
    assert written == [10]
