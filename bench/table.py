"""No figure of its own: the rows of every ``python -m bench`` table, rendered as text."""

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
        (r.figure, r.unit, _fmt(r.tutorial), _fmt(r.job), f"{r.ratio:.2f}×" if r.ratio else "")
        for r in rows
    ]
    out = [line.rstrip() for line in fixed_width([header, *body], "<<>>>", rule=True)]
    wrap = textwrap.TextWrapper(100, "  ", subsequent_indent="      ", break_on_hyphens=False)
    notes = [wrap.fill(f"{r.figure.strip()}: {r.how}") for r in rows if r.how]
    if notes:
        out += ["", "How each figure is measured:", *notes]
    return "\n".join(out)


def fixed_width(rows: Sequence[Sequence[str]], align: str, *, rule: bool = False) -> list[str]:
    """Rows of cells as lines, columns two spaces apart, each padded to its widest cell.

    ``align`` has a character for each padded column, ``<`` (left) or ``>`` (right); the
    cells past it are written as they are. ``rule``: a line of dashes after the first row.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(align))]
    if rule:
        rows = [rows[0], ["-" * w for w in widths], *rows[1:]]
    lines = []
    for row in rows:
        padded = zip(row[: len(align)], widths, align, strict=True)
        cells = [c.ljust(w) if a == "<" else c.rjust(w) for c, w, a in padded]
        lines.append("  ".join([*cells, *row[len(align) :]]))
    return lines
