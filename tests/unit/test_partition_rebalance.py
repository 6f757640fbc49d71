"""The pure decision of partition ownership (:func:`okta_bridge.partitions.rebalance`) on a shutdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from okta_bridge.partitions import rebalance
from okta_bridge.stores.partitions import Lease, PoolState

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=45)


def state() -> PoolState:
    live = NOW + timedelta(seconds=30)
    return PoolState("default", 4, 3, NOW, {"a": live, "b": live},
                     [Lease("a", live, 5), Lease("a", live, 6), Lease("b", live, 2), Lease("b", live, 9)])


def test_leaving_releases_what_is_drained_and_never_renews_what_is_not():
    """Partition 1 stopped at its deadline while the replica shut down (requests may still be in flight there):
    its lease is neither renewed, which would block the next owner for another TTL, nor released early; it lapses at
    its expiry. Partition 0 was drained: released at once, its token kept for the next owner to raise."""
    out = rebalance(state(), "a", TTL, drained={0}, leaving=True)
    assert out.released == [0] and out.kept == [] and out.taken == []
    assert out.state.leases[0] == Lease(None, NOW, 5)
    assert out.state.leases[1] == Lease("a", NOW + timedelta(seconds=30), 6)  # untouched: lapses on its own
    assert "a" not in out.state.members
    assert out.state.leases[2:] == state().leases[2:]


def test_leaving_renews_what_still_drains():
    """A shutdown's drain takes longer than a renewal: the partitions still draining are renewed (their work goes on
    under a valid lease), the drained one released."""
    out = rebalance(state(), "a", TTL, drained={0}, leaving=True, working={0, 1})
    assert out.released == [0] and [g.partition for g in out.kept] == [1] and out.to_drain == [1]
    assert out.state.leases[1] == Lease("a", NOW + TTL, 6)
    assert "a" not in out.state.members  # no share any more: nobody waits for it to take anything


def test_a_renewal_keeps_and_extends_what_is_ours():
    out = rebalance(state(), "a", TTL, drained=set())
    assert [g.partition for g in out.kept] == [0, 1] and out.released == [] and out.to_drain == []
    assert out.state.leases[1] == Lease("a", NOW + TTL, 6)
