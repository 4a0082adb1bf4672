"""Each stage's change in every eval against its parent's score, with the standard error of the change: the
second table ``cascadec run`` prints, which says whether a stage moved its domains beyond eval noise.

The standard error of one score ``p`` over ``n`` items is ``sqrt(p (1 - p) / n)`` (the binomial standard
error of a mean of per-item scores in [0, 1]; for scores with partial credit it is an upper bound, since a
[0, 1] variable of mean ``p`` has variance at most ``p (1 - p)``). The two scores of a change are treated as
independent, ``se = sqrt(se_stage^2 + se_parent^2)``; the items are the same, so this overstates the noise
of a paired difference (a conservative test).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rich.table import Table

from cascadec.contract.plan import Plan
from runtime.state import BASE

MARKS = {1: " ▲", -1: " ▼", 0: ""}


def score_se(score: float, n: int) -> float:
    """Standard error of a mean of ``n`` per-item scores in [0, 1] with mean ``score`` (0 when ``n`` < 1)."""
    p = min(max(score, 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / n) if n >= 1 else 0.0


def change(stage: Mapping[str, Any], parent: Mapping[str, Any]) -> tuple[float, float]:
    """``(score_stage - score_parent, its standard error)`` of two eval records (``score``, ``n``)."""
    delta = float(stage["score"]) - float(parent["score"])
    se = math.hypot(score_se(float(stage["score"]), int(stage.get("n", 0))),
                    score_se(float(parent["score"]), int(parent.get("n", 0))))
    return delta, se


def change_table(plan: Plan, points: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Table | None:
    """Rows: stages whose parent and own scores are recorded; columns: each eval's change ``±`` its standard
    error, marked ▲/▼ where it is at least 2 standard errors. ``points`` is
    ``runtime.state.last_eval_points``'s ``{stage: {"domain.eval": record}}``. None when no row has both."""
    keys = sorted({k for per in points.values() for k in per})
    table = Table(caption="▲/▼: a change of at least 2 standard errors (binomial, unpaired)")
    table.add_column("stage (vs parent)")
    for key in keys:
        table.add_column(key, justify="right")
    rows = 0
    for stage in plan.stages:
        mine, theirs = points.get(stage.name, {}), points.get(stage.parent, {})
        cells = []
        for key in keys:
            if key in mine and key in theirs:
                delta, se = change(mine[key], theirs[key])
                sign = (delta >= 2 * se) - (delta <= -2 * se) if se > 0 else 0
                cells.append(f"{delta:+.3f} ± {se:.3f}{MARKS[sign]}")
            else:
                cells.append("-")
        if any(c != "-" for c in cells):
            rows += 1
            table.add_row(f"{stage.name} (vs {stage.parent if stage.parent != BASE else 'base'})", *cells)
    return table if rows else None
