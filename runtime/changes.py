"""Each stage's change in every eval against its parent's score, with the standard error of the change: the
second table ``cascadec run`` prints, which says whether a stage moved its domains beyond eval noise.

Both checkpoints answer the same eval items, so where both records list their per-item scores
(``item_scores``, ``runtime.evals.run_evals``) the change is a paired difference (Miller 2024, "Adding Error
Bars to Evals: A Statistical Approach to Language Model Evaluations", arXiv:2411.00640, the section on
paired differences): over the ``m`` items scored in both, ``d_i = x_i - y_i`` (stage minus parent),
``change = mean(d)`` and ``se = sd(d) / sqrt(m)`` with the sample standard deviation (``ddof = 1``). It
leaves out the item-to-item variation both checkpoints share, which an unpaired error counts twice.

Items that repeat one prompt (a generator's 256 items over 91 distinct products) are not independent: under
greedy decoding their scores are identical. Where both records carry the same ``item_groups`` (each item's
cluster: the index of the first item with its prompt), the error is clustered (Miller 2024, the section on
clustered standard errors): with ``e_i = d_i - mean(d)``,
``se^2 = sd(d)^2 / m + (sum_c (sum_{i in c} e_i)^2 - sum_i e_i^2) / m^2``, which is ``sd(d) / sqrt(m)`` when
every item is its own cluster and grows with the repeats otherwise.

Records without per-item scores (run directories written before they were recorded), or whose lists differ in
length, or with fewer than 2 items scored in both, fall back to the binomial error of each score: over ``n``
items ``sqrt(p (1 - p) / n)`` (for scores with partial credit an upper bound, since a [0, 1] variable of mean
``p`` has variance at most ``p (1 - p)``), combined as if independent, ``se = sqrt(se_stage^2 + se_parent^2)``,
which overstates the noise of a paired difference (a conservative test).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from rich.table import Table

from cascadec.contract.plan import Plan
from runtime.state import BASE

MARKS = {1: " ▲", -1: " ▼", 0: ""}
UNPAIRED_MARK = " †"


class Change(NamedTuple):
    delta: float  # stage minus parent, in score units
    se: float  # its standard error
    paired: bool  # True: paired over the same items; False: binomial, unpaired
    clustered: bool = False  # paired, with items that repeat a prompt taken as one cluster


def score_se(score: float, n: int) -> float:
    """Standard error of a mean of ``n`` per-item scores in [0, 1] with mean ``score`` (0 when ``n`` < 1)."""
    p = min(max(score, 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / n) if n >= 1 else 0.0


def record_se(record: Mapping[str, Any]) -> float:
    """Standard error of one eval record's score: clustered over its scored items (:func:`clustered_se`)
    when it lists ``item_scores`` and ``item_groups`` of one length and at least 2 items were scored, else
    the binomial :func:`score_se` of ``score`` over ``n`` items."""
    items, groups = record.get("item_scores"), record.get("item_groups")
    if isinstance(items, list) and isinstance(groups, list) and len(items) == len(groups):
        scored = [(float(v), int(g)) for v, g in zip(items, groups) if v is not None]
        if len(scored) >= 2:
            return clustered_se([v for v, _ in scored], [g for _, g in scored])
    return score_se(float(record["score"]), int(record.get("n", 0)))


def item_differences(stage: Mapping[str, Any], parent: Mapping[str, Any]) -> list[tuple[float, int]] | None:
    """``(x_i - y_i, cluster of item i)`` over the items scored in both records' ``item_scores`` (a None item is
    left out of the pair); None when either record has no ``item_scores`` or the lists differ in length (not
    the same items). The cluster is the records' shared ``item_groups`` entry, else the item's own index."""
    x, y = stage.get("item_scores"), parent.get("item_scores")
    if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y):
        return None
    groups = stage.get("item_groups")
    if not isinstance(groups, list) or groups != parent.get("item_groups") or len(groups) != len(x):
        groups = list(range(len(x)))
    return [(float(a) - float(b), int(g)) for a, b, g in zip(x, y, groups) if a is not None and b is not None]


def clustered_se(diffs: Sequence[float], groups: Sequence[int]) -> float:
    """The clustered standard error of ``mean(diffs)`` (module docstring; Miller 2024), items of one
    ``groups`` value forming a cluster; ``sd(diffs) / sqrt(m)`` when all groups differ. Needs m >= 2."""
    m, mean = len(diffs), statistics.fmean(diffs)
    sums: dict[int, float] = {}
    for d, g in zip(diffs, groups):
        sums[g] = sums.get(g, 0.0) + d - mean
    within = sum(v * v for v in sums.values()) - sum((d - mean) ** 2 for d in diffs)
    return math.sqrt(max(statistics.variance(diffs) / m + within / m**2, 0.0))


def change(stage: Mapping[str, Any], parent: Mapping[str, Any]) -> Change:
    """The change from ``parent``'s eval record to ``stage``'s (``score``, ``n``, optional ``item_scores`` and
    ``item_groups``).

    Paired (module docstring) when :func:`item_differences` has at least 2 items: ``delta`` is then the mean
    of the differences, which equals ``score_stage - score_parent`` when both scored the same items (a mean
    of differences over one set of items is the difference of the means over it; an item scored by one
    checkpoint only is left out of both), and the error is clustered where items repeat a prompt.
    Otherwise ``delta = score_stage - score_parent`` with the binomial, unpaired error."""
    pairs = item_differences(stage, parent)
    if pairs is not None and len(pairs) >= 2:
        diffs, groups = [d for d, _ in pairs], [g for _, g in pairs]
        return Change(statistics.fmean(diffs), clustered_se(diffs, groups), True, len(set(groups)) < len(groups))
    delta = float(stage["score"]) - float(parent["score"])
    se = math.hypot(score_se(float(stage["score"]), int(stage.get("n", 0))),
                    score_se(float(parent["score"]), int(parent.get("n", 0))))
    return Change(delta, se, False)


def caption(kinds: set[bool], clustered: bool = False) -> str:
    """The table's caption, naming the standard error its cells use (``kinds``: their ``Change.paired``;
    ``clustered``: whether one of them clustered repeated items)."""
    paired = "paired over the same items" + (", repeated prompts clustered" if clustered else "")
    if kinds == {True}:
        used = paired
    elif kinds == {False}:
        used = "binomial, unpaired"
    else:
        used = f"{paired};{UNPAIRED_MARK}: binomial, unpaired, with no per-item scores"
    return f"▲/▼: a change of at least 2 standard errors ({used})"


def change_table(plan: Plan, points: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Table | None:
    """Rows: stages whose parent and own scores are recorded; columns: each eval's change ``±`` its standard
    error, marked ▲/▼ where it is at least 2 standard errors; the caption says which standard error was used
    (:func:`caption`). ``points`` is ``runtime.state.last_eval_points``'s ``{stage: {"domain.eval": record}}``.
    None when no row has both."""
    keys = sorted({k for per in points.values() for k in per})
    rows = {}
    for stage in plan.stages:
        mine, theirs = points.get(stage.name, {}), points.get(stage.parent, {})
        cells = {k: change(mine[k], theirs[k]) for k in keys if k in mine and k in theirs}
        if cells:
            rows[f"{stage.name} (vs {stage.parent if stage.parent != BASE else 'base'})"] = cells
    if not rows:
        return None
    kinds = {c.paired for cells in rows.values() for c in cells.values()}
    table = Table(caption=caption(kinds, any(c.clustered for cells in rows.values() for c in cells.values())))
    table.add_column("stage (vs parent)")
    for key in keys:
        table.add_column(key, justify="right")
    for label, cells in rows.items():
        table.add_row(label, *(_cell(cells[k], mixed=len(kinds) > 1) if k in cells else "-" for k in keys))
    return table


def _cell(c: Change, *, mixed: bool) -> str:
    sign = (c.delta >= 2 * c.se) - (c.delta <= -2 * c.se) if c.se > 0 else 0
    return f"{c.delta:+.3f} ± {c.se:.3f}{MARKS[sign]}{UNPAIRED_MARK if mixed and not c.paired else ''}"
