"""The fault-injection suite, short version: real processes, the suite's own RabbitMQ and MongoDB-wire nodes,
changes for several apps while services are SIGKILLed, the broker and the database restart, the target fails
and Okta answers 429. The truth is the target's state and request log against Okta's state.

New in the partitioned pipeline: a dispatcher that owns partitions is SIGKILLed, or paused (SIGSTOP) past its lease
and resumed; dispatchers are added and removed during the run; the translator is killed in the middle of a batch at
the largest batch size.

The suite can fail: deliberately broken builds (the version check removed, the lookup before create removed, a
batched Okta read trusted although older than an earlier plan's, a newcomer that takes leases others still hold, an
owner that writes past its local deadline, a batch acknowledged before its bulk write) must be reported by the same
runner, each by its own deterministic probe."""

from __future__ import annotations

import shutil

import pytest

from tests.faults.runner import ALL_FAULTS, TRANSLATOR_BATCH_SIZE, Runner

pytestmark = pytest.mark.e2e

# no skip: without rabbitmq-server (which `make deps` needs too) these tests fail, loudly
assert shutil.which("rabbitmq-server"), "the fault suite starts its own RabbitMQ node: rabbitmq-server is needed"


async def test_no_change_is_lost_duplicated_or_reordered_under_faults(tmp_path):
    """Every fault kind at least once, and every probe (whose broken builds the tests below catch) passing. The
    target does not enforce unique userNames: a create sent twice would show as a second account."""
    runner = Runner(tmp_path, seed=11, apps=3, users_per_app=8, dispatchers=2, faults=ALL_FAULTS,
                    probes=("reorder", "lost_answer", "stale_listing", "stale_filter", "ack_before_write",
                            "local_deadline", "lease_wait"), target_quirks=("no-unique-username",), timeout_s=6)
    # long enough for every kind of fault once (a RabbitMQ restart is a process restart, about 8 s; a paused
    # dispatcher stays paused past its lease)
    report = await runner.run(duration_s=75)
    print("\n" + report.table())
    assert report.changes > 50 and set(report.faults) == set(ALL_FAULTS), "the run made changes and every fault"
    # the scale faults: dispatchers added, and removed (SIGTERM) while the run goes on
    assert report.dispatchers_added >= 1 and report.dispatchers_removed >= 1, report.table()
    # the translator bursts: killed while it held a batch of the largest size (its deliveries unacknowledged)
    assert max(report.in_hand_at_kill, default=0) >= TRANSLATOR_BATCH_SIZE, report.in_hand_at_kill
    assert report.retried > 0, "faults made the bridge retry"
    assert not report.lost, report.lost
    assert not report.duplicated, report.duplicated
    assert not report.out_of_order, report.out_of_order
    assert not report.concurrent, report.concurrent
    assert not report.late_writes, report.late_writes


@pytest.mark.parametrize("dispatchers", [1, 2, 4])
async def test_order_holds_with_1_2_and_4_dispatchers_for_20_apps(tmp_path, dispatchers):
    """Scale-out: twenty apps, dispatchers killed now and then (one owning partitions each time), added and
    removed, the target failing now and then; per user and app the changes land in order and never from two
    dispatchers at once."""
    runner = Runner(tmp_path, seed=dispatchers, apps=20, users_per_app=2, dispatchers=dispatchers,
                    faults=("kill_dispatcher", "scale", "target_5xx", "kill"))
    report = await runner.run(duration_s=20)
    print("\n" + report.table())
    assert report.changes > 20
    assert not report.lost, report.lost
    assert not report.duplicated, report.duplicated
    assert not report.out_of_order, report.out_of_order
    assert not report.concurrent, report.concurrent


async def test_the_suite_reports_builds_that_break_the_version_check_the_read_trust_or_the_lookup(tmp_path):
    """One stack, three independent mechanisms broken and a probe for each (the same probes pass in the main run):
    the version check (a retried older update overwrites a newer one), the lastUpdated check on batched Okta reads
    (a sync's page, or a membership event's filtered listing, computed before a change and arriving after it, sets
    the old title again) and the lookup before create (a create whose answer was lost is sent again: a second
    account on a target that does not enforce unique userNames)."""
    runner = Runner(tmp_path, seed=7, apps=1, users_per_app=8, dispatchers=1, faults=(), broken="plans",
                    probes=("reorder", "lost_answer", "stale_listing", "stale_filter"),
                    target_quirks=("no-unique-username",), idle_s=20)
    report = await runner.run(duration_s=0)
    print("\n" + report.table())
    found = {probe: report.about(login) for probe, login in runner.probe_users.items()}
    assert any("applied after" in x for x in found["reorder"]), found  # the retried older update won
    assert found["stale_listing"] and found["stale_filter"], found
    assert any("accounts" in x for x in found["lost_answer"]), found  # created twice


async def test_the_suite_reports_builds_that_break_partition_ownership_or_ack_too_early(tmp_path):
    """One stack, three independent mechanisms broken and a probe for each (their correct behaviour is probed in the
    main run): a newcomer that takes partitions others still hold, an owner that starts a write after its local
    deadline, a batch acknowledged before its bulk write."""
    runner = Runner(tmp_path, seed=13, apps=2, users_per_app=6, dispatchers=1, faults=(), broken="partition_guards",
                    probes=("ack_before_write", "local_deadline", "lease_wait"), timeout_s=8, idle_s=20)
    report = await runner.run(duration_s=0)
    print("\n" + report.table())
    found = {probe: report.about(login) for probe, login in runner.probe_users.items()}
    assert set(found) == {"ack_before_write", "local_deadline", "lease_wait"}
    assert any("after its owner's local deadline" in x for x in found["local_deadline"]), found
    assert found["ack_before_write"], "the older plan set the old title again: the newer one's link was never stored"
    assert found["lease_wait"], "the newcomer applied the next change beside the write in flight"
