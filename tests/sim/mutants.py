"""`make mutants`: the simulator's reach, measured by planting money bugs.

Each mutant breaks one money rule with a patch applied to a copy of this checkout (never a
switch in shipped code). The simulator alone (short seeds, no unit test) must kill it: report a
violation. The table says which invariant caught it and after how many operations; a mutant
that survives is a gap in the simulator to close, not a row to drop.

    python -m tests.sim.mutants             # every mutant (make mutants)
    python -m tests.sim.mutants --subset    # the quick ones make test runs
    python -m tests.sim.mutants --only daily-cap
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("schema", "resolvers", "infra", "handlers", "tests")
FILES = ("template.yaml", "pyproject.toml")
HOLD = 7 * 24 * 3600


@dataclass(frozen=True)
class Mutant:
    name: str
    rule: str  # the money rule it breaks
    patches: tuple[tuple[str, str, str], ...]  # (file, exact text, replacement)
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5, 6)  # tried in order until one kills it
    ops: int = 1500
    subset: bool = False  # run in make test
    payouts: bool = False  # the world pays withdrawals through the Connect processor


MUTANTS = [
    Mutant(
        "balance-condition",
        "a debit never takes a balance below zero",
        (
            (
                "infra/accounts.py",
                'condition = "coins >= :c AND diamonds >= :d AND '
                'attribute_not_exists(restrictedBy)"',
                'condition = "diamonds >= :d AND attribute_not_exists(restrictedBy) AND :c >= :c"',
            ),
        ),
        subset=True,
    ),
    Mutant(
        "double-credit",
        "a purchase is credited once, whatever retries",
        # every guard of exactly-once crediting at once: the record's PENDING -> COMPLETED,
        # the ledger entry's id fixed when the key was claimed, the charge's single purchase
        (
            ("resolvers/purchases.py", '"id": record["purchaseId"],', '"id": new_id("pur"),'),
            ("resolvers/purchases.py", 'entry_id=record["entryId"],', 'entry_id=new_id("tx"),'),
            (
                "infra/idempotency.py",
                'condition="#s = :pending AND requestHash = :h",',
                'condition=":pending = :pending AND requestHash = :h",',
            ),
            (
                "infra/purchases.py",
                'condition="attribute_not_exists(id) OR purchaseId = :p",',
                'condition="attribute_not_exists(id) OR :p = :p",',
            ),
        ),
        subset=True,
    ),
    Mutant(
        "daily-cap",
        "a creator's withdrawals stay within the daily limit",
        (
            (
                "infra/withdrawals.py",
                'condition="attribute_not_exists(cents) OR cents <= :most",',
                'condition="attribute_not_exists(cents) OR cents <= :most OR cents >= :zero",',
            ),
        ),
    ),
    Mutant(
        "hold-bypass",
        "only matured diamonds are withdrawn",
        (("infra/earnings.py", "            if matures <= now:", "            if True:"),),
    ),
    Mutant(
        "idempotency-record",
        "a keyed gift lands once",
        (
            (
                "resolvers/gifts.py",
                "        idempotency.completed_action("
                'ctx, attempt, {"transferId": transfer["id"]}),\n',
                "",
            ),
        ),
        subset=True,
    ),
    Mutant(
        "ledger-row",
        "every balance change writes its ledger entry",
        (
            (
                "resolvers/gifts.py",
                'kind="GIFT_SENT",\n            coins=-coins,',
                'kind="GIFT_SENT",\n            coins=-coins + 1,',
            ),
        ),
        subset=True,
    ),
    Mutant(
        "restriction",
        "a buyer whose spent coins were taken back is restricted",
        (
            (
                "resolvers/money_back.py",
                'take_back_action(buyer, wallet, held, purchase["id"] if spent else None)',
                "take_back_action(buyer, wallet, held, None)",
            ),
        ),
    ),
    Mutant(
        "restriction-lifted",
        "a restriction goes once none of its coins stay taken",
        (
            (
                "resolvers/money_back.py",
                "lift = spent > 0 and spent - unspent == 0",
                "lift = False",
            ),
        ),
    ),
    Mutant(
        "ranking-score",
        "the ranking's score is the coins a sender gifted",
        (("infra/rankings.py", '":step": coins * _SPAN,', '":step": coins * _SPAN * 2,'),),
        subset=True,
    ),
    Mutant(
        "allowance-returned",
        "a rejected withdrawal gives its cents back to the day's allowance",
        (
            (
                "resolvers/withdrawals.py",
                "                services.withdrawals.release_daily_action(\n"
                '                    owner, withdrawal["day"], withdrawal["amount"]\n'
                "                ),\n",
                "",
            ),
        ),
    ),
    Mutant(
        "settlement-guard",
        "a withdrawal is settled once, from PENDING",
        (
            (
                "infra/withdrawals.py",
                'condition="#s = :pending",',
                'condition="#s = :pending OR #s <> :to",',
            ),
        ),
    ),
    Mutant(
        "case-step-guard",
        "one runner lands each step of a purchase's convergence",
        (
            (
                "infra/purchases.py",
                "condition=f\"{counted('step', before.get('step', 0), ':step')} AND gen = :gen\",",
                "condition=f\"{counted('step', before.get('step', 0), ':step')} OR gen = :gen\",",
            ),
        ),
    ),
    Mutant(
        "cumulative-refund",
        "a charge's refunds are summed, not its last one taken",
        (
            (
                "resolvers/purchases.py",
                "return money_back.Truth(state.amount, state.refunded, state.disputed)",
                "return money_back.Truth(\n"
                "            state.amount, state.refunds[-1].amount if state.refunds else 0,"
                " state.disputed\n        )",
            ),
        ),
    ),
    Mutant(
        "lagging-index",
        "the reversal walk decides from the base items, not a lagging index",
        (
            (
                "resolvers/money_back.py",
                "        walk.entries, walk.more = await services.ledger.spending(\n"
                '            purchase["accountId"], after=position, since=_boundary(purchase), '
                "limit=PAGE\n        )",
                "        page, walk.more = await services.transfers.by_sender(\n"
                '            purchase["accountId"],\n'
                "            PAGE,\n"
                '            None if not position or position.startswith("tx_") else position,\n'
                "        )\n"
                "        walk.entries = [\n"
                '            {"entryId": services.transfers.cursor(t), "kind": "GIFT_SENT",'
                ' "referenceId": t["id"]}\n'
                "            for t in page\n        ]",
            ),
        ),
    ),
    Mutant(
        "event-entry-reversal",
        "what event entries paid is reversed too",
        (
            (
                "resolvers/money_back.py",
                'joins = [e for e in entries if e["kind"] == "EVENT_ENTRY"]',
                "joins: list[Item] = []",
            ),
        ),
    ),
    Mutant(
        "conflict-as-user-error",
        "contention is retried, never answered or remembered as a user error",
        (
            (
                "infra/dynamo.py",
                'return self.reasons[index] == "ConditionalCheckFailed"',
                'return self.reasons[index] != "None"',
            ),
            (
                "infra/dynamo.py",
                "return bool(codes) and codes <= TRANSIENT_REASONS",
                "return False",
            ),
        ),
        subset=True,
    ),
    Mutant(
        "withdraw-while-owed",
        "owed diamonds are repaid before anything is withdrawn",
        (
            (
                "resolvers/withdrawals.py",
                "repay = money_back.repay_actions(services, account, shards)",
                "repay: list[Any] = []",
            ),
            ("resolvers/withdrawals.py", '- account.get("owedDiamonds", 0),', "- 0,"),
            (
                "resolvers/withdrawals.py",
                "debit_action(account_id, 0, take, owes_nothing=True)",
                "debit_action(account_id, 0, take, owes_nothing=False)",
            ),
            (
                "resolvers/withdrawals.py",
                "unrestricted_action(account_id, owes_nothing=True)",
                "unrestricted_action(account_id, owes_nothing=False)",
            ),
        ),
    ),
    Mutant(
        "clawback-owed",
        "a repayment lowers what is owed by what it took",
        (
            (
                "resolvers/money_back.py",
                "services.accounts.owed_action(creator, owed, owed - repaid, debit=own)",
                "services.accounts.owed_action(creator, owed, owed, debit=own)",
            ),
        ),
    ),
    Mutant(
        "restore-counter",
        "a gift's reversed coins come down when its diamonds are restored",
        (
            (
                "resolvers/money_back.py",
                "_reversed_action(services, paid, reversed_now, reversed_now - back),",
                "_reversed_action(services, paid, reversed_now, reversed_now),",
            ),
        ),
    ),
    Mutant(
        "unmatched-payment",
        "money charged for no purchase is refunded",
        (
            (
                "resolvers/purchases.py",
                "    if left > 0:\n        # a refund that failed is asked again, under a new key",
                "    if left < 0:\n        # a refund that failed is asked again, under a new key",
            ),
        ),
    ),
    Mutant(
        "transfer-once",
        "a withdrawal is transferred once, whatever retries",
        (("resolvers/payouts.py", "key=transfer_key(wid, attempt),", 'key=new_id("tr"),'),),
        ops=3000,  # a transfer retried after a timeout that hid its success: enough settlements
        payouts=True,
    ),
    Mutant(
        "return-guard",
        "a reversed transfer's diamonds are returned once",
        (
            (
                "infra/withdrawals.py",
                'condition="#s = :paid AND payoutReference = :tr AND "\n'
                '            + counted("returnedDiamonds", before, ":before"),',
                'condition="#s = :paid AND payoutReference = :tr AND "\n'
                '            + ":before = :before",',
            ),
        ),
        ops=3000,
        payouts=True,
    ),
]


@dataclass
class Outcome:
    mutant: Mutant
    killed: bool
    invariant: str = ""
    operations: int | None = None
    seed: int | None = None
    seconds: float = 0.0
    error: str = ""


def _copy(to: Path) -> None:
    for name in CODE:
        shutil.copytree(
            ROOT / name,
            to / name,
            ignore=shutil.ignore_patterns("__pycache__", "static", ".pytest_cache", "*.png"),
        )
    for name in FILES:
        shutil.copy2(ROOT / name, to / name)


def _apply(to: Path, mutant: Mutant) -> None:
    for file, old, new in mutant.patches:
        path = to / file
        text = path.read_text()
        if text.count(old) < 1:
            raise ValueError(f"{mutant.name}: the text to change is not in {file}: {old!r}")
        path.write_text(text.replace(old, new))


def _run(mutant: Mutant | None, seed: int, ops: int, payouts: bool) -> dict[str, object]:
    """One short seed of the simulator on a mutated copy (or on this checkout)."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        where = Path(tmp)
        _copy(where)
        if mutant is not None:
            _apply(where, mutant)
        code = (
            "import json, sys\n"
            "from tests.sim.run import simulate\n"
            f"r = simulate({seed}, clients=16, operations={ops}, fault_rate=0.2, hold={HOLD},"
            f" stop_on_violation=True, payouts={payouts})\n"
            "print(json.dumps({'violations': r.violations[:3], 'at': r.detected_at,"
            " 'completed': r.completed}))\n"
        )
        env = {**os.environ, "PYTHONPATH": str(where), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=where,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            return {"error": lines[-1] if lines else f"exit {done.returncode}"}
        result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def _invariant(violation: str) -> str:
    """A short name for the check a violation came from."""
    known = (
        ("ledger promise", "ledger promise"),
        ("coin conservation", "coin conservation"),
        ("diamond conservation", "diamond conservation"),
        ("exactly once", "exactly once per key"),
        ("credited", "a charge credited once"),
        ("negative", "no negative balance"),
        ("remembered", "no fault remembered as a user error"),
        ("replay answered", "a replay answers the first answer"),
        ("rankSort", "ranking score = coins gifted"),
        ("daily limit", "daily cap"),
        ("pending bucket", "only matured diamonds withdrawn"),
        ("-> ", "settled once, from PENDING"),
        ("is not restricted", "restriction where spent coins were taken"),
        ("restricted by", "no restriction without spent coins"),
        ("coins reversed, records", "gift reversals = records"),
        ("reversible", "a loss only when nothing is left to reverse"),
        ("outside its window", "reversals within the purchase's window"),
        ("owes", "owed = records - repaid"),
        ("diamonds are owed", "no withdrawal while owed"),
        ("took back", "money back = the processor's state"),
        ("never credited nor refunded", "every charge credited or refunded"),
        ("daily withdrawal total", "daily total = withdrawals"),
        ("topGifters", "ranking = gifts"),
        ("transferred", "a withdrawal transferred once"),
        ("would have paid", "PayoutRefused only as the processor refused"),
        ("returned for", "returned = what was reversed"),
        ("returned more", "returned = what was reversed"),
        ("audit", "livecoins audit"),
        ("errors", "no internal error"),
    )
    for needle, name in known:
        if needle in violation:
            return name
    return violation[:60]


def run_mutant(mutant: Mutant) -> Outcome:
    started = time.perf_counter()
    for seed in mutant.seeds:
        result = _run(mutant, seed, mutant.ops, mutant.payouts)
        if "error" in result:
            return Outcome(mutant, False, error=str(result["error"]))
        violations = result["violations"]
        if violations:
            first = str(violations[0])  # type: ignore[index]
            at = result["at"]
            return Outcome(
                mutant,
                True,
                _invariant(first),
                int(at) if isinstance(at, int) else None,
                seed,
                time.perf_counter() - started,
            )
    return Outcome(mutant, False, seconds=time.perf_counter() - started)


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| mutant | money rule broken | killed | invariant that caught it | seed "
        "| operations to detection |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.mutant.name} | {o.mutant.rule} | {'yes' if o.killed else 'NO'} | "
            f"{o.invariant or o.error} | {o.seed or '-'} | {o.operations if o.killed else '-'} |"
        )
    killed = sum(o.killed for o in outcomes)
    lines.append(f"\n{killed} of {len(outcomes)} mutants killed by the simulator alone.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", action="store_true", help="the quick ones (make test)")
    parser.add_argument("--only", nargs="*", help="these mutants only")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if (not args.subset or m.subset)]
    if args.subset:  # one seed each: these die within the first few hundred operations
        chosen = [dataclasses.replace(m, seeds=m.seeds[:1]) for m in chosen]
    if args.only:
        chosen = [m for m in chosen if m.name in args.only]
    # the same seeds on this checkout: a mutant is killed only where the original passes
    runs = sorted({(seed, m.ops, m.payouts) for m in chosen for seed in m.seeds})
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        baselines = list(pool.map(lambda run: _run(None, *run), runs))
        for run, baseline in zip(runs, baselines, strict=True):
            if baseline.get("violations") or "error" in baseline:
                print(f"the unmutated code fails seed {run}: {baseline}", file=sys.stderr)
                return 2
        outcomes = list(pool.map(run_mutant, chosen))
    print(table(outcomes))
    return 0 if all(o.killed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
