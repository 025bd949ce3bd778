"""The one table `make bench` prints: every row is what was measured, its anchor, the project's
figure and their ratio, each as min and median over interleaved runs (anchor, project, anchor,
project, ...), so drift on a shared machine hits both sides alike. Rows that cannot be
measured here (DynamoDB at scale) say so and give their inputs in a note.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

RUNS = 5  # interleaved runs per ratio row, at least
# Rows print in issue 8's order (whatever order the benchmarks ran in), then the others'.
ORDER = (
    "gifts/s",
    "Lambda cold start: `import",
    "Lambda cold start: import +",
    "warm CPU per request through the Lambda handler: catalog",
    "warm CPU per request through the Lambda handler: sendGift",
    "botocore's client side",
    "local server vs",
    "local `me { transactions",
    "local engine: Query",
    "a test's sendGift",
    "repeated catalog document",
    "GraphiQL's introspection",
    "hostile load",
    "gift feed",
)


def _rank(row: Row) -> int:
    return next((i for i, start in enumerate(ORDER) if row.what.startswith(start)), len(ORDER))


@dataclass
class Row:
    what: str
    anchor: str
    project: str
    ratio: str
    note: str = ""
    aim: str = ""


def spread(values: Sequence[float], unit: str, digits: int = 2) -> str:
    """ "min / median unit" of a sample."""
    return f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f} {unit}"


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def ratio(
        self,
        what: str,
        anchor_label: str,
        anchor: Sequence[float],
        project_label: str,
        project: Sequence[float],
        unit: str,
        *,
        aim: str = "",
        note: str = "",
        digits: int = 2,
    ) -> list[float]:
        """A measured row: anchor[i] and project[i] come from the same interleaved run."""
        assert len(anchor) == len(project) >= RUNS, (what, len(anchor), len(project))
        ratios = [p / a for a, p in zip(anchor, project, strict=True)]
        self.rows.append(
            Row(
                what,
                f"{anchor_label}: {spread(anchor, unit, digits)}",
                f"{project_label}: {spread(project, unit, digits)}",
                f"{_ratio(min(ratios))} / {_ratio(statistics.median(ratios))}",
                note,
                aim,
            )
        )
        return ratios

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def info(self, what: str, project: str, note: str = "", anchor: str = "-") -> None:
        """A row measured without an anchor to divide by (reported, not a ratio)."""
        self.rows.append(Row(what, anchor, project, "-", note))

    def render(self) -> str:
        lines = [
            "| what | anchor (min / median) | project (min / median) | ratio min / median | aim |",
            "|---|---|---|---|---|",
        ]
        notes = []
        for row in sorted(self.rows, key=_rank):
            what = row.what
            if row.note:
                notes.append(row.note)
                what += f" [{len(notes)}]"
            lines.append(f"| {what} | {row.anchor} | {row.project} | {row.ratio} | {row.aim} |")
        lines.append("")
        lines += [f"[{n}] {text}" for n, text in enumerate(notes, 1)]
        return "\n".join(lines)


def _ratio(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"
