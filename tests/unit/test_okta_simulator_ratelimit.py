"""The simulator's rate limiter: fixed minute windows per bucket and token at the token's share of the plan, and
the per-window counts `make bench` compares with the token's limit."""

from okta_simulator.ratelimit import HISTORY_WINDOWS, RateLimiter


def test_a_token_gets_its_share_of_a_window_and_the_next_window_starts_afresh():
    limiter = RateLimiter("workforce", 0.5)
    assert limiter.limit_for("logs") == 60  # 120 a minute on Workforce, half of it for the token
    decisions = [limiter.check("logs", "tok", 600.0 + i * 0.1) for i in range(61)]
    assert all(d.allowed for d in decisions[:60]) and not decisions[60].allowed
    assert decisions[59].remaining == 0 and decisions[0].reset == 660
    assert limiter.check("logs", "tok", 660.0).allowed


def test_stats_give_the_most_one_token_used_in_each_window():
    limiter = RateLimiter("workforce", 0.5)
    for i in range(70):  # ten past the limit: refused calls are not counted as used
        limiter.check("logs", "a", 600.0 + i * 0.5)
    for i in range(5):
        limiter.check("logs", "b", 610.0 + i)
        limiter.check("users", "a", 665.0 + i)
    used = limiter.stats()["usedByWindow"]
    assert used == {"logs@600": 60, "users@660": 5}  # b's 5 in the same window do not add to a's 60
    assert limiter.stats()["rateLimited"] == {"logs": {"a": 10}}


def test_the_window_history_is_bounded():
    limiter = RateLimiter("workforce", 0.5)
    for minute in range(HISTORY_WINDOWS * 3):
        for bucket in ("logs", "users", "user", "apps", "app", "groups", "group", "other"):
            limiter.check(bucket, "a", minute * 60.0)
    used = limiter.stats()["usedByWindow"]
    assert len(used) == HISTORY_WINDOWS * 8  # the current window and the ones before it, no more
    last = HISTORY_WINDOWS * 3 - 1
    assert f"logs@{last * 60}" in used and f"logs@{(last - HISTORY_WINDOWS + 1) * 60}" in used
    assert f"logs@{(last - HISTORY_WINDOWS) * 60}" not in used


def test_old_windows_are_forgotten_with_only_one_bucket_in_use():
    limiter = RateLimiter("workforce", 0.5)
    for minute in range(HISTORY_WINDOWS * 2):
        limiter.check("logs", "a", minute * 60.0)
    assert len(limiter.stats()["usedByWindow"]) == HISTORY_WINDOWS
