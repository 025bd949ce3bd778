"""The fault simulator in `make test`: short seeded runs through both entrypoints on the
DynamoDB-like store (tests/sim/store.py, `Fidelity`) and on a serial one, exact replay, and
proof that its checks fail when the code mistakes a conflict for a user error.

The long runs (64 clients, 100,000 operations, 20 % faults) are `make sim`.

On the DynamoDB-like store the short seeds found product bugs (issue 16, "Store fidelity":
decisions made from eventually consistent reads of a video or an event created a moment
before, and replays reading an item of a committed transaction before it was visible); each
now has its fix, and every seed must end with no violation."""

from __future__ import annotations

import dataclasses
import functools

import pytest

from infra.config import Settings
from infra.dynamo import TransactionCancelled
from tests.sim import world
from tests.sim.run import DYNAMODB, Report, simulate

HOLD = 7 * 24 * 3600


@functools.cache
def short_run(
    seed: int, entrypoint: str = "lambda", serial: bool = False, hold: int = HOLD
) -> Report:
    clients, operations = (8, 200) if entrypoint == "aiohttp" else (16, 400)
    return simulate(
        seed,
        clients=clients,
        operations=operations,
        fault_rate=0.2,
        entrypoint=entrypoint,
        fidelity=None if serial else DYNAMODB,
        hold=hold,
    )


@pytest.mark.parametrize(("seed", "hold"), [(11, 0), (12, HOLD), (13, HOLD)])
def test_short_simulation_through_the_lambda_handler(seed: int, hold: int) -> None:
    report = short_run(seed, hold=hold)
    assert report.violations == [], report.text()
    # GIVEN faults of every kind were injected, THEN they were absorbed or retried
    assert {"TransactionConflict", "timeout-after", "crash-before"} <= set(report.injected)
    assert report.outcomes["GiftSent"] > 0 and report.outcomes["CoinsPurchased"] > 0
    # AND the store did what DynamoDB does beyond one serial engine, none of it injected
    for kind in (
        "TransactionConflict",
        "TransactionConflict with ConditionalCheckFailed",
        "TransactionInProgressException",
        "UnprocessedKeys",
        "stale read",
    ):
        assert report.store[kind] > 0, (kind, report.store)


def test_short_simulation_on_a_serial_store() -> None:
    """Every read the latest, every transaction applied inside its call (the store as it was
    before issue 16): no violation at all."""
    report = short_run(11, serial=True)
    assert report.violations == [], report.text()
    assert not report.store


def test_short_simulation_through_the_local_server() -> None:
    report = short_run(21, "aiohttp")
    assert report.violations == [], report.text()
    assert report.outcomes["GiftSent"] > 0


def test_a_seed_replays_exactly() -> None:
    first = simulate(5, clients=8, operations=150, fault_rate=0.3)
    second = simulate(5, clients=8, operations=150, fault_rate=0.3)
    assert first.digest == second.digest
    assert first.outcomes == second.outcomes and first.injected == second.injected
    assert first.store == second.store and first.violations == second.violations
    assert simulate(6, clients=8, operations=150, fault_rate=0.3).digest != first.digest


def conflicts_read_as_failed_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defect this simulator was built for: contention read as a condition failure."""
    monkeypatch.setattr(TransactionCancelled, "failed", lambda self, i: self.reasons[i] != "None")
    monkeypatch.setattr(TransactionCancelled, "transient", property(lambda self: False))


def test_the_checks_catch_a_conflict_read_as_a_failed_condition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conflicts_read_as_failed_conditions(monkeypatch)
    # GIVEN a serial store: the only conflicts are the injected ones
    report = simulate(11, clients=16, operations=400, fault_rate=0.2, fidelity=None)
    # THEN the run reports violations (wrong user errors, remembered under keys)
    assert report.violations
    assert any("remembered" in v or "INTERNAL" in v for v in report.violations)


def test_real_contention_alone_catches_a_conflict_read_as_a_failed_condition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conflicts_read_as_failed_conditions(monkeypatch)
    # GIVEN no injected conflict: only overlapping transactions on the DynamoDB-like store
    monkeypatch.setitem(world.STORE_FAULTS, "TransactionConflict", 0)
    report = simulate(11, clients=16, operations=400, fault_rate=0.2)
    assert "TransactionConflict" not in report.injected
    assert report.store["TransactionConflict"] > 0
    # THEN violations
    assert report.violations, report.text()


def test_ttl_deletes_what_expires_during_a_run() -> None:
    """TTL's deletions reach the run as writes (the records expire after a second here; in
    the product after 24 hours, and runs take virtual minutes). What a deleted record means
    for exactly-once (a retry after expiry is a new request) is for the checker to judge."""
    settings = dataclasses.replace(Settings(), idempotency_ttl_seconds=1)
    report = simulate(
        7,
        clients=8,
        operations=150,
        fault_rate=0.0,
        settings=settings,
        fidelity=dataclasses.replace(DYNAMODB, ttl_delay=1.0),
    )
    assert report.store["TTL deletion"] > 0, report.store


@pytest.mark.engine
def test_a_run_on_the_local_engine_through_the_local_server(engine: str) -> None:
    """Real threads, real time, the real engine: not replayable, and only the faults are
    simulated. Every answer is checked as it comes, the invariants from a scan at the end."""
    from tests.sim.run import simulate_on_engine

    settings = dataclasses.replace(Settings(), dynamodb_endpoint=engine)
    report = simulate_on_engine(settings, seed=31, clients=16, operations=300, fault_rate=0.2)
    assert report.violations == [], report.text()
    assert report.outcomes["GiftSent"] > 0 and sum(report.injected.values()) > 0
