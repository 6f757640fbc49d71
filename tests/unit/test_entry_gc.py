"""The services' collector settings (okta_bridge.entry.quiet_collector): what is alive at start-up is frozen, the
youngest generation is collected less often, and cyclic garbage made afterwards is still collected."""

import gc
import weakref

import pytest

from okta_bridge.entry import GC_GEN0_THRESHOLD, quiet_collector


@pytest.fixture
def restored_collector():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class _Node:
    def __init__(self) -> None:
        self.other: "_Node | None" = None


def test_start_up_objects_are_frozen_and_the_youngest_generation_waits_longer(restored_collector):
    alive_before = _Node()
    quiet_collector()
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(alive_before)
    assert not any(alive_before is o for o in gc.get_objects())  # frozen: no generation holds it, no collection walks it
    assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD


def test_cyclic_garbage_made_after_start_up_is_still_collected(restored_collector):
    quiet_collector()
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle: reference counting alone never frees it
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None
    gc.collect()
    assert gone() is None
