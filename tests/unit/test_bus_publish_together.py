"""okta_bridge.bus.publish_together, used by the poller (a page's events) and the translator (a batch's plans):
a window at a time, confirms awaited together, every item tried, then the first failure raised."""

from __future__ import annotations

import asyncio

import pytest

from okta_bridge.bus import publish_together


async def test_items_go_out_a_window_at_a_time_with_their_confirms_awaited_together():
    in_flight, peak, sent = 0, 0, []

    async def publish(i: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)  # the broker's confirm
        in_flight -= 1
        sent.append(i)

    await publish_together(list(range(25)), publish, window=10)
    assert sorted(sent) == list(range(25))
    assert peak == 10  # together within a window, never more than a window


async def test_every_item_is_tried_and_then_the_first_failure_is_raised():
    sent = []

    async def publish(i: int) -> None:
        if i in (3, 12):
            raise ConnectionError(f"refused {i}")
        sent.append(i)

    with pytest.raises(ConnectionError, match="refused 3"):
        await publish_together(list(range(20)), publish, window=5)
    assert sorted(sent) == [i for i in range(20) if i not in (3, 12)]


async def test_the_items_the_broker_confirmed_are_reported_even_when_one_fails():
    async def publish(i: int) -> None:
        if i == 3:
            raise ConnectionError("refused 3")

    confirmed: list[int] = []
    with pytest.raises(ConnectionError):
        await publish_together(list(range(8)), publish, window=5, confirmed=confirmed)
    assert confirmed == [0, 1, 2, 4, 5, 6, 7]


async def test_nothing_to_publish_is_no_work():
    async def publish(i: int) -> None:
        raise AssertionError("not called")

    await publish_together([], publish)
