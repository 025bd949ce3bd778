"""The simulator's reach in `make test`: the quick planted money bugs of `make mutants`
(tests/sim/mutants.py), each applied to a copy of this checkout, must be killed by short
simulator seeds alone. `make mutants` (run by .ci/run after `make test`) runs all of them."""

from __future__ import annotations

import pytest

from tests.sim.mutants import MUTANTS, main


def test_every_mutant_names_a_rule_and_applies() -> None:
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names)) >= 15
    for mutant in MUTANTS:
        assert mutant.rule and mutant.patches
        for file, old, _new in mutant.patches:
            from tests.sim.mutants import ROOT

            assert (ROOT / file).read_text().count(old) >= 1, (mutant.name, file)


def test_the_simulator_kills_the_quick_mutants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--subset"]) == 0, capsys.readouterr().out
    table = capsys.readouterr().out
    assert "NO" not in table
