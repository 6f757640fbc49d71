"""The per-app circuit: opens at once on refused credentials, after N transient failures in a row for a target that
is down; while open, one probe per interval; a success closes it; its state is exported as a Prometheus gauge."""

import time

from prometheus_client import REGISTRY

from scim_dispatcher.circuit import Circuits


def gauge(app: str) -> float | None:
    return REGISTRY.get_sample_value("bridge_dispatcher_circuit_open", {"app": app})


def test_transient_failures_in_a_row_open_the_circuit_and_a_success_closes_it():
    circuits = Circuits(probe_interval_s=3600, failure_threshold=3, names={"0oaA": "jira-a"})
    assert circuits.failure("0oaA", "503") is False
    assert circuits.failure("0oaA", "503") is False
    assert circuits.allow("0oaA")
    assert circuits.failure("0oaA", "timeout") is True
    assert "3 failures in a row" in circuits.reason("0oaA") and "timeout" in circuits.reason("0oaA")
    assert gauge("jira-a") == 1
    assert not circuits.allow("0oaA"), "no probe before the interval"
    circuits.close("0oaA")
    assert circuits.allow("0oaA") and gauge("jira-a") == 0
    assert circuits.failure("0oaA", "503") is False, "the count starts again after a success"


def test_an_open_circuit_lets_one_probe_through_per_interval():
    circuits = Circuits(probe_interval_s=0.2, failure_threshold=1)
    circuits.open("0oaB", "401 Unauthorized")
    assert not circuits.allow("0oaB")
    time.sleep(0.25)
    assert circuits.allow("0oaB")
    assert not circuits.allow("0oaB")
    assert circuits.snapshot() == {"0oaB": "open: 401 Unauthorized"}


def test_a_success_between_failures_keeps_it_closed():
    circuits = Circuits(failure_threshold=2)
    circuits.failure("0oaC", "500")
    circuits.close("0oaC")
    assert circuits.failure("0oaC", "500") is False
