"""The fault simulator: `python -m tests.sim.run --seed 1 --clients 64 --ops 100000 --faults 0.2`
(or `make sim SEED=1 CLIENTS=64 OPS=100000 FAULTS=0.2`).

C virtual clients run N operations in total through the Lambda handler against the in-process
store (tests/sim/store.py, held to the local engine by tests/test_sim_store.py), while faults
are injected at every store and payment-provider call at the given rate. The store behaves as
DynamoDB does beyond one serial engine (`Fidelity`: lagging eventually consistent reads and
GSIs, transactions that hold their items over scheduler steps and conflict for real,
unprocessed batch keys, TTL deletion); `--store serial` turns that off. The invariants are
checked after every completed operation. Then faults stop, every operation left without an
answer is retried with its key, and the derived totals are audited. One seed replays one run
exactly; a failure prints the seed and the last operations.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import logging
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from infra import runtime
from infra.config import Settings
from infra.dynamo import Dynamo, from_item
from infra.services import Services
from infra.tables import ensure_tables
from resolvers.audit import audit
from resolvers.catalog import seed as seed_catalog
from tests.sim.checker import Totals
from tests.sim.scheduler import Scheduler, SimRuntime
from tests.sim.store import Fidelity, MemoryDynamo
from tests.sim.stores import SimStores
from tests.sim.workload import LIMIT_CENTS, MINIMUM_CENTS, Workload
from tests.sim.world import World

PREFIX = "sim-"
DYNAMODB = Fidelity()  # the store's departures from a serial engine, at their documented bounds


@dataclass
class Report:
    seed: int
    clients: int
    operations: int
    fault_rate: float
    entrypoint: str = "lambda"
    completed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    absorbed: Counter[str] = field(default_factory=Counter)
    store: Counter[str] = field(default_factory=Counter)  # what the store's fidelity did
    crashes: int = 0
    containers: int = 0
    final_retries: int = 0
    violations: list[str] = field(default_factory=list)
    detected_at: int | None = None  # operations completed when the first violation showed
    reached: Counter[str] = field(default_factory=Counter)
    last: list[str] = field(default_factory=list)
    virtual_seconds: float = 0.0
    wall_seconds: float = 0.0
    steps: int = 0
    digest: str = ""

    def text(self) -> str:
        lines = [
            f"seed {self.seed} ({self.entrypoint}): {self.clients} clients, "
            f"{self.completed} operations "
            f"({self.operations} asked), faults {self.fault_rate:.0%}",
            f"  wall {self.wall_seconds:.1f} s, virtual {self.virtual_seconds:.1f} s, "
            f"{self.steps} scheduled calls, {self.containers} containers, {self.crashes} crashes",
            f"  injected: {dict(sorted(self.injected.items()))}",
            f"  store (not injected): {dict(sorted(self.store.items()))}",
            f"  retried inside requests: {dict(sorted(self.absorbed.items()))}",
            f"  answers: {dict(self.outcomes.most_common())}",
            f"  reached: {dict(sorted(self.reached.items()))}",
            f"  retried after faults stopped: {self.final_retries}",
            f"  violations: {len(self.violations)}",
            f"  replay digest: {self.digest}",
        ]
        if self.violations:
            lines += ["", f"FAILED: replay with --seed {self.seed}", *self.violations[:20]]
            lines += ["", "last operations:", *self.last]
        return "\n".join(lines)


def simulate(
    seed: int,
    clients: int = 16,
    operations: int = 300,
    fault_rate: float = 0.2,
    settings: Settings | None = None,
    entrypoint: str = "lambda",
    progress: bool = False,
    hold: int = 0,
    stop_on_violation: bool = False,
    fidelity: Fidelity | None = DYNAMODB,
    payouts: bool = False,
) -> Report:
    """One seeded run. With `hold` > 0 (the earnings hold, seconds) virtual time also jumps
    hours and days now and then, so diamonds mature, are withdrawn, and are then disputed;
    `fidelity` None runs on a serial store (every read the latest, every transaction applied
    inside its call). With `payouts` the world has the Connect processor of tests/sim/payouts.py
    and the workload onboards creators and pays withdrawals by transfer."""
    world_class, workload_class = World, Workload
    if payouts:
        from tests.sim.payouts import PayoutsWorkload, PayoutsWorld, payout_settings

        world_class = type("World", (PayoutsWorld, World), {})
        workload_class = type("Workload", (PayoutsWorkload, Workload), {})
        settings = payout_settings(settings)
    report = Report(seed, clients, operations, fault_rate, entrypoint)
    scheduler = Scheduler(random.Random(f"schedule-{seed}"))
    sim = SimRuntime(scheduler, random.Random(f"runtime-{seed}"))
    previous = runtime.install(sim)
    quiet = logging.getLogger("livecoins")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # TRY_AGAIN warnings are expected here, by the thousand
    started = time.perf_counter()
    try:
        settings = dataclasses.replace(
            settings or Settings(),
            table_prefix=PREFIX,
            earnings_hold_seconds=hold,
            daily_withdrawal_limit_cents=LIMIT_CENTS,  # limits the workload reaches
            minimum_withdrawal_cents=MINIMUM_CENTS,
            store_test_accounts=SimStores.TESTERS,
        )
        store = MemoryDynamo(  # copy_results off: from_item copies
            clock=sim.time,
            copy_results=False,
            fidelity=fidelity,
            rng=random.Random(f"store-{seed}"),
        )
        ensure_tables(store, settings)
        asyncio.run(_seed(settings, store))
        store.settle()  # the catalog was there long before the run
        world = world_class(seed, store, settings, fault_rate, scheduler, entrypoint)
        totals = Totals(PREFIX, world.provider, sim.time, hold, LIMIT_CENTS, world.stores)
        store.listeners.append(totals.listen)
        store.on_apply.append(totals.applied)
        workload = workload_class(world, totals, seed, clients, operations, PREFIX)
        workload.stop_on_violation = stop_on_violation
        if progress:
            workload.progress = lambda done: print(
                f"  {done} operations, {time.perf_counter() - started:.0f} s", flush=True
            )
        asyncio.run(_main(world, workload, report))
        report.violations = workload.violations
        report.violations += totals.audit(settled=True)
        if store.in_flight():
            report.violations.append(f"{store.in_flight()} decided transactions never applied")
        report.violations += asyncio.run(_audit(settings, store, world.provider))
        report.reached = totals.reached
        report.detected_at = workload.detected_at
        if report.violations and report.detected_at is None:  # by the audits after the run
            report.detected_at = workload.completed
        report.completed = workload.completed
        report.outcomes = workload.outcomes
        report.injected = world.stats.faults
        report.absorbed = world.absorbed()
        report.store = store.events
        report.crashes = world.stats.crashes
        report.containers = world.stats.containers
        report.last = list(workload.log)
        report.steps = scheduler.steps
        report.virtual_seconds = scheduler.now
        report.digest = hashlib.sha256("\n".join(scheduler.trace).encode()).hexdigest()[:16]
    finally:
        runtime.install(previous)
        quiet.setLevel(level)
    report.wall_seconds = time.perf_counter() - started
    return report


def _direct(settings: Settings, store: Any, provider: Any = None) -> Services:
    """Services on the store with no scheduling and no faults (outside the simulated world)."""
    dynamo = Dynamo(settings, client=store)

    async def direct(operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = getattr(store, operation)(**kwargs)
        return result

    dynamo.invoke = direct
    return Services(settings, dynamo, payments=provider)


async def _seed(settings: Settings, store: Any) -> None:
    catalog = _direct(settings, store).catalog
    await seed_catalog(catalog)
    await SimStores.sell(catalog)  # packages sold in the App Store and Google Play too


async def _audit(settings: Settings, store: Any, provider: Any) -> list[str]:
    """`livecoins audit` of the run's tables and processor, once everything settled."""

    class Listed:  # the processor, read as the audit reads it: its lists and its charges
        def __init__(self) -> None:
            self.charges_between = provider.charges_between
            self.refunds_between = provider.refunds_between
            self.disputes_between = provider.disputes_between

        async def charge(self, charge_id: str) -> Any:
            return provider.charge(charge_id)

    report = await audit(_direct(settings, store, Listed()), 0, 2**40, segments=1)
    # `report.open` (a runner bumped a purchase and died, or was answered from what an earlier
    # one settled) is informational: the money itself is checked by the findings
    return [f"audit: {f.kind} {f.reference}: {f.detail}" for f in report.findings]


async def _main(world: World, workload: Workload, report: Report) -> None:
    scheduler = world.scheduler
    tasks = [asyncio.ensure_future(workload.client(n)) for n in range(len(workload.users))]
    tasks.append(asyncio.ensure_future(workload.processor(every=10)))
    await scheduler.drive(
        lambda: (
            all(t.done() for t in tasks)
            or any(t.done() and not t.cancelled() and t.exception() for t in tasks)
        )
    )
    for task in tasks:  # a client or the processor that raised: its error, the rest cancelled
        if task.done() and not task.cancelled() and task.exception():
            for other in tasks:
                other.cancel()
            task.result()
    world.faults_on = False
    workload.finish_authentication()
    final = asyncio.ensure_future(workload.settle_open())
    await scheduler.drive(final.done)
    report.final_retries = final.result()
    deliveries = asyncio.ensure_future(workload.redeliver())
    await scheduler.drive(deliveries.done)
    deliveries.result()
    # Transactions of crashed containers (or of timed-out calls) still committing: the store
    # finishes them whatever became of their callers.
    await scheduler.drive(lambda: scheduler.background == 0)
    for delivery in workload.undelivered:
        workload.violations.append(f"a webhook never acknowledged: {delivery[0][:120]}")


def simulate_on_engine(
    services_settings: Settings, seed: int, clients: int, operations: int, fault_rate: float
) -> Report:
    """The same clients and checks through the local server on the real local engine, with
    real threads and time: not replayable, but nothing in it is simulated except the faults.
    Invariants are checked once at the end, from a scan of every table."""
    import boto3

    report = Report(seed, clients, operations, fault_rate, "aiohttp+engine")
    settings = dataclasses.replace(
        services_settings,
        table_prefix=PREFIX,
        daily_withdrawal_limit_cents=LIMIT_CENTS,
        minimum_withdrawal_cents=MINIMUM_CENTS,
    )
    client = boto3.client(
        "dynamodb", region_name=settings.region, endpoint_url=settings.dynamodb_endpoint
    )
    started = time.perf_counter()
    ensure_tables(client, settings)
    asyncio.run(seed_catalog(Services(settings, Dynamo(settings, client=client)).catalog))
    world = World(seed, client, settings, fault_rate, None, "aiohttp")
    totals = Totals(PREFIX, world.provider)
    workload = Workload(world, totals, seed, clients, operations, PREFIX)
    workload.after_each = False  # nothing to check between operations: no stopped world

    async def run() -> None:
        await asyncio.gather(*(workload.client(n) for n in range(clients)))
        world.faults_on = False
        report.final_retries = await workload.settle_open()

    asyncio.run(run())
    # ListTables pages at 100 names: the session's engine holds every test's tables.
    names = [
        n for page in client.get_paginator("list_tables").paginate() for n in page["TableNames"]
    ]
    for name in names:
        if name.startswith(PREFIX):
            for page in client.get_paginator("scan").paginate(TableName=name):
                for item in page["Items"]:
                    totals.listen(name, None, None, from_item(item))
    report.violations = workload.violations + totals.check()
    report.violations += totals.audit(settled=True)
    report.completed, report.outcomes = workload.completed, workload.outcomes
    report.injected, report.absorbed = world.stats.faults, world.absorbed()
    report.crashes, report.containers = world.stats.crashes, world.stats.containers
    report.last = list(workload.log)
    report.wall_seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="run this many seeds from --seed")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--faults", type=float, default=0.2)
    parser.add_argument("--entrypoint", choices=("lambda", "aiohttp"), default="lambda")
    parser.add_argument(
        "--hold", type=int, default=7 * 24 * 3600, help="earnings hold, s (0: no clock jumps)"
    )
    parser.add_argument(
        "--store",
        choices=("dynamodb", "serial"),
        default="dynamodb",
        help="dynamodb: lagging reads and indexes, real contention (default); serial: none",
    )
    parser.add_argument(
        "--payouts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="creators onboard to the Connect processor and withdrawals are paid by transfer",
    )
    args = parser.parse_args(argv)
    failed = False
    for seed in range(args.seed, args.seed + args.seeds):
        report = simulate(
            seed,
            args.clients,
            args.ops,
            args.faults,
            entrypoint=args.entrypoint,
            progress=True,
            hold=args.hold,
            fidelity=DYNAMODB if args.store == "dynamodb" else None,
            payouts=args.payouts,
        )
        print(report.text(), flush=True)
        failed |= bool(report.violations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
