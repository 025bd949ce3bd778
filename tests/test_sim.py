"""The fault simulator in `make test`: short seeded runs through both entrypoints, exact replay,
and proof that its checks fail when the code mistakes a fault for a user error.

The long runs (64 clients, 100,000 operations, 20 % faults) are `make sim`."""

from __future__ import annotations

import pytest

from infra.dynamo import TransactionCancelled
from tests.sim.run import simulate


@pytest.mark.parametrize(("seed", "hold"), [(11, 0), (12, 7 * 24 * 3600), (13, 7 * 24 * 3600)])
def test_short_simulation_through_the_lambda_handler(seed: int, hold: int) -> None:
    report = simulate(seed, clients=16, operations=400, fault_rate=0.2, hold=hold)
    assert report.violations == [], report.text()
    # GIVEN faults of every kind were injected, THEN they were absorbed or retried
    assert {"TransactionConflict", "timeout-after", "crash-before"} <= set(report.injected)
    assert report.outcomes["GiftSent"] > 0 and report.outcomes["CoinsPurchased"] > 0


def test_short_simulation_through_the_local_server() -> None:
    report = simulate(21, clients=8, operations=200, fault_rate=0.2, entrypoint="aiohttp")
    assert report.violations == [], report.text()
    assert report.outcomes["GiftSent"] > 0


def test_a_seed_replays_exactly() -> None:
    first = simulate(5, clients=8, operations=150, fault_rate=0.3)
    second = simulate(5, clients=8, operations=150, fault_rate=0.3)
    assert first.digest == second.digest
    assert first.outcomes == second.outcomes and first.injected == second.injected
    assert simulate(6, clients=8, operations=150, fault_rate=0.3).digest != first.digest


def test_the_checks_catch_a_conflict_read_as_a_failed_condition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the defect this simulator was built for: contention read as a condition failure
    monkeypatch.setattr(TransactionCancelled, "failed", lambda self, i: self.reasons[i] != "None")
    monkeypatch.setattr(TransactionCancelled, "transient", property(lambda self: False))
    report = simulate(11, clients=16, operations=400, fault_rate=0.2)
    # THEN the run reports violations (wrong user errors, remembered under keys)
    assert report.violations
    assert any("remembered" in v or "INTERNAL" in v for v in report.violations)


@pytest.mark.engine
def test_a_run_on_the_local_engine_through_the_local_server(engine: str) -> None:
    """Real threads, real time, the real engine: not replayable, and only the faults are
    simulated. Every answer is checked as it comes, the invariants from a scan at the end."""
    import dataclasses

    from infra.config import Settings
    from tests.sim.run import simulate_on_engine

    settings = dataclasses.replace(Settings(), dynamodb_endpoint=engine)
    report = simulate_on_engine(settings, seed=31, clients=16, operations=300, fault_rate=0.2)
    assert report.violations == [], report.text()
    assert report.outcomes["GiftSent"] > 0 and sum(report.injected.values()) > 0
