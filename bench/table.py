"""Benchmark results as rows, rendered as a plain-text table of ratios."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One figure measured for both pipelines.

    ``higher_is_better`` decides the ratio's direction so that it always reads as the job's
    speed-up: job/tutorial for rates, tutorial/job for times. ``None`` marks a value that
    has no ratio (for example an accuracy shown for comparison).
    """

    figure: str
    unit: str
    tutorial: float | None
    job: float | None
    higher_is_better: bool | None = True
    how: str = ""

    @property
    def ratio(self) -> float | None:
        """The job's speed-up over the tutorial (> 1: the job is faster)."""
        if self.higher_is_better is None or not self.tutorial or not self.job:
            return None
        if self.higher_is_better:
            return self.job / self.tutorial
        return self.tutorial / self.job

    def to_json(self) -> dict[str, Any]:
        """The row's fields plus its ratio, ready for json.dumps."""
        return {**asdict(self), "ratio": self.ratio}


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def render(rows: Sequence[Row]) -> str:
    """A fixed-width table (figure, unit, tutorial, job, speed-up), then how each was measured."""
    header = ("figure", "unit", "tutorial", "job", "speed-up")
    body = [
        (
            r.figure,
            r.unit,
            _fmt(r.tutorial),
            _fmt(r.job),
            "" if r.ratio is None else f"{r.ratio:.2f}×",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        left = [c.ljust(w) for c, w in zip(cells[:2], widths[:2], strict=True)]
        right = [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(left + right).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(cells) for cells in body]
    notes = [
        textwrap.fill(
            f"{r.figure.strip()}: {r.how}",
            width=100,
            initial_indent="  ",
            subsequent_indent="      ",
            break_on_hyphens=False,
        )
        for r in rows
        if r.how
    ]
    if notes:
        out += ["", "How each figure is measured:", *notes]
    return "\n".join(out)
