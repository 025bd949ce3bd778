"""`make bench`: each benchmark adds its rows to one table, printed once at the end."""

from __future__ import annotations

from typing import Any

import pytest

from tests.benchmarks.table import Table

TABLE = Table()


@pytest.fixture
def bench() -> Table:
    return TABLE


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TABLE.rows:
        terminalreporter.write_sep("=", "make bench")
        terminalreporter.write_line(TABLE.render())
