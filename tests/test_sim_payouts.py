"""tests/sim/payouts.py: the fake Connect processor on its own, then plugged into the simulator
(subclasses of its World and Workload, as its docstring says) for short seeds through both
entrypoints: onboardings that stall and recover, accounts restricted mid-review, transfers
reversed, every fault, and 0 violations."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from infra.payouts import ENABLED, ONBOARDING, RESTRICTED, PayoutRefusal
from tests.sim import run
from tests.sim.payouts import (
    PayoutsWorkload,
    PayoutsWorld,
    SimConnect,
    payout_settings,
)
from tests.sim.workload import Workload
from tests.sim.world import World

# --- the fake processor ------------------------------------------------------------------------


def test_accounts_are_created_once_and_their_state_is_the_processors() -> None:
    connect = SimConnect()
    first = connect.create_account("cora", "payout-account:cora")
    assert connect.create_account("cora", "payout-account:cora") == first
    assert (first.status(False), first.requirements_due[0]) == (
        ONBOARDING,
        "identity.individual.verification.document",
    )
    connect.complete(first.id)
    assert connect.account(first.id).status(False) == ENABLED
    connect.restrict(first.id)
    assert connect.account(first.id).status(True) == RESTRICTED
    connect.stall(first.id)
    assert connect.account(first.id).status(False) == ONBOARDING
    with pytest.raises(LookupError):
        connect.account("acct_none")


def test_transfers_once_per_key_and_refusals_replayed_under_theirs() -> None:
    connect = SimConnect()
    account = connect.create_account("cora", "k").id
    with pytest.raises(PayoutRefusal, match="insufficient_capabilities"):
        connect.transfer(1000, "USD", account, "wdr_1", "wdr_1")
    connect.complete(account)
    with pytest.raises(PayoutRefusal):  # Stripe replays the refusal under its key
        connect.transfer(1000, "USD", account, "wdr_1", "wdr_1")
    paid = connect.transfer(1000, "USD", account, "wdr_1", "wdr_1:2")
    assert connect.transfer(1000, "USD", account, "wdr_1", "wdr_1:2") == paid
    assert connect.find_transfer("wdr_1") == paid and len(connect.transfers) == 1
    with pytest.raises(PayoutRefusal, match="balance"):
        connect.transfer(500, "USD", account, "wdr_2", "wdr_2", refuse=True)
    assert connect.reverse(paid.id, 300).reversed == 300
    assert connect.reverse(paid.id, 10**9).reversed == 1000


def test_deliveries_are_signed_and_state_history_answers_for_refusals() -> None:
    now = [0]
    connect = SimConnect()
    connect.writes = lambda: now[0]
    account = connect.create_account("cora", "k").id  # at store write 0: not enabled
    now[0] = 5
    connect.complete(account)  # at 5: enabled
    assert connect.disabled_since(account, 0) and connect.disabled_since(account, 4)
    assert not connect.disabled_since(account, 5) and not connect.disabled_since(account, 9)
    now[0] = 10
    connect.restrict(account)  # at 10: not enabled
    assert connect.disabled_since(account, 9) and connect.disabled_since(account, 12)
    payload, signature = connect.delivery("v1.transfer.reversed", "tr_1")
    event = connect.event(payload.encode(), signature)
    assert (event.type, event.object_id) == ("transfer.reversed", "tr_1")
    for forged in ("0" * 64, None, hmac.new(b"x", payload.encode(), hashlib.sha256).hexdigest()):
        with pytest.raises(ValueError):
            connect.event(payload.encode(), forged)


# --- plugged into the simulator ------------------------------------------------------------------

RUNS: list[Any] = []


class PluggedWorld(PayoutsWorld, World):  # type: ignore[misc]
    pass


class PluggedWorkload(PayoutsWorkload, Workload):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        RUNS.append(self)


@pytest.fixture
def plugged(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.setattr(run, "World", PluggedWorld)
    monkeypatch.setattr(run, "Workload", PluggedWorkload)
    RUNS.clear()
    return RUNS


# with a 7-day hold earnings must mature before anything is withdrawn: a longer run
@pytest.mark.parametrize(("seed", "hold", "operations"), [(32, 0, 1000), (38, 7 * 24 * 3600, 2000)])
def test_short_simulations_with_payouts(
    plugged: list[Any], seed: int, hold: int, operations: int
) -> None:
    report = run.simulate(
        seed,
        clients=16,
        operations=operations,
        fault_rate=0.2,
        settings=payout_settings(),
        hold=hold,
    )
    assert report.violations == [], report.text()
    (workload,) = plugged
    reached = workload.checks.reached
    # the payouts paths were reached: transfers paid, reversals returned, onboarding used
    assert reached["paid by transfer"] > 0 and reached["returned"] > 0, reached
    assert workload.connect.accounts and workload.onboarded() > 0
    assert report.outcomes["PayoutAccountRequired"] > 0, report.outcomes
    assert any(k.startswith("connect webhook 200") for k in report.outcomes), report.outcomes


def test_a_simulation_with_payouts_through_the_local_server(plugged: list[Any]) -> None:
    report = run.simulate(
        33,
        clients=8,
        operations=400,
        fault_rate=0.2,
        settings=payout_settings(),
        entrypoint="aiohttp",
    )
    assert report.violations == [], report.text()
