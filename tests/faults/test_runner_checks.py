"""The fault runner's own checks, on made-up request logs and reports: no processes, no broker."""

from __future__ import annotations

from tests.faults.runner import Report, _overlapping_writes


def _put(seq: int, at_ms: int, duration_ms: float, account: str = "a1", fault: str | None = None) -> dict:
    return {"seq": seq, "method": "PUT", "path": f"/scim/v2/Users/{account}",
            "time": f"2026-01-01T00:00:{at_ms // 1000:02d}.{at_ms % 1000:03d}Z", "duration_ms": duration_ms,
            "fault": fault}


def test_a_write_arriving_while_a_fault_delayed_write_is_in_flight_is_an_overlap():
    log = [_put(1, 1000, 2500, fault="slow"), _put(2, 2000, 5)]  # the slow write ends at 3.5 s
    assert _overlapping_writes(log, timeout_s=6) == ["account a1: requests 1 and 2 overlap"]


def test_a_slow_write_overlapping_several_later_ones_is_reported_for_each():
    log = [_put(1, 1000, 4000, fault="slow"), _put(2, 2000, 5), _put(3, 3000, 5), _put(4, 6000, 5)]
    assert _overlapping_writes(log, timeout_s=6) == ["account a1: requests 1 and 2 overlap",
                                                     "account a1: requests 1 and 3 overlap"]


def test_writes_one_after_the_other_or_to_other_accounts_do_not_overlap():
    log = [_put(1, 1000, 999), _put(2, 2000, 5), _put(3, 1500, 3000, account="a2", fault="slow")]
    assert _overlapping_writes(log, timeout_s=6) == []


def test_beyond_the_clients_timeout_a_request_is_an_answer_lost_not_a_write_in_flight():
    log = [_put(1, 1000, 9000, fault="slower than the timeout"), _put(2, 5000, 5), _put(3, 8000, 5)]
    assert _overlapping_writes(log, timeout_s=6) == ["account a1: requests 1 and 2 overlap"]


def test_the_summary_shows_dispatchers_added_and_removed_and_the_batch_in_hand_at_each_kill():
    rows = dict(line.rsplit("  ", 1) for line in
                Report(dispatchers_added=2, dispatchers_removed=1, in_hand_at_kill=[1000, 1012]).table().splitlines()
                if not line.startswith(" "))
    rows = {name.strip(): value for name, value in rows.items()}
    assert rows["dispatchers added"] == "2" and rows["dispatchers removed"] == "1"
    assert rows["translator: deliveries in hand at each kill"] == "1000, 1012"
