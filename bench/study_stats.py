"""The study's statistics (pure functions, unit-tested in tests/study/): per-stage scores across seeds, the
arms' recovery curves, steps to bring domain A back to 95% of its teacher's score, paired MOPD-minus-GRPO
differences with t and bootstrap intervals, and the plain-language verdict. Inputs are the records of a run's
``evals.jsonl``; nothing here reads files or plots."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from runtime.changes import score_se

BASE = "base"
RECOVERY = 0.95  # "recover domain A to 95% of its teacher's score" (issues 7 and 20)
CONFIDENCE = 0.95


class StudyError(Exception):
    """A problem the user must fix (a missing run, a plan without the named arms, ...)."""


def last_scores(records: Sequence[dict]) -> dict[str, dict[str, float]]:
    """``{stage: {"domain.eval": score}}`` at each stage's last eval step (for equal steps the later line
    wins: the loop may record its last eval point and its final eval at the same step)."""
    best: dict[str, dict[str, tuple[int, float]]] = {}
    for r in records:
        key = f"{r['domain']}.{r['eval']}"
        cur = best.setdefault(r["stage"], {}).get(key)
        if cur is None or int(r["step"]) >= cur[0]:
            best[r["stage"]][key] = (int(r["step"]), float(r["score"]))
    return {s: {k: v[1] for k, v in d.items()} for s, d in best.items()}


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (0 for one value) of ``n`` values."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}" if self.n > 1 else f"{self.mean:.3f}"


def spread(values: Sequence[float]) -> Spread:
    """Raises ValueError on an empty sequence."""
    if not values:
        raise ValueError("spread of no values")
    return Spread(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def stage_table(per_run: Sequence[dict[str, dict[str, float]]], stages: Sequence[str]
                ) -> dict[str, dict[str, Spread]]:
    """Each stage's score on each eval, across runs (``per_run``: :func:`last_scores` of each seed).

    A run that lacks a stage (failed, or not run yet) does not count for it, so ``Spread.n`` may differ."""
    table: dict[str, dict[str, Spread]] = {}
    keys = sorted({k for run in per_run for scores in run.values() for k in scores})
    for stage in stages:
        row = {k: spread([run[stage][k] for run in per_run if k in run.get(stage, {})]) for k in keys
               if any(k in run.get(stage, {}) for run in per_run)}
        if row:
            table[stage] = row
    return table


def arm_curve(records: Sequence[dict], arm: str, parent: str, key: str) -> list[tuple[int, float]]:
    """The eval curve ``[(step, score)]`` of ``key`` ("domain.eval") in stage ``arm``, sorted by step, with
    the parent's last score as step 0 (where both arms start). A repeated step keeps its last record."""
    start = last_scores(records).get(parent, {}).get(key)
    points: dict[int, float] = {} if start is None else {0: start}
    for r in records:
        if r["stage"] == arm and f"{r['domain']}.{r['eval']}" == key:
            points[int(r["step"])] = float(r["score"])
    return sorted(points.items())


def steps_to_reach(curve: Sequence[tuple[int, float]], target: float) -> int | None:
    """The first eval step whose score is >= ``target`` (0 when the start already is), None if never.

    Resolution is the stage's ``eval_every``: the true crossing lies between the previous eval point and this."""
    for step, score in curve:
        if score >= target:
            return step
    return None


def teacher_score(scores: dict[str, dict[str, float]], candidates: Sequence[str], key: str) -> float:
    """The teacher's score on ``key``: the best of the candidates' last scores, as ``best(...)`` picks it.

    Raises StudyError when no candidate has a score on ``key``."""
    found = [scores[c][key] for c in candidates if key in scores.get(c, {})]
    if not found:
        raise StudyError(f"no score on `{key}` for the teacher candidates {', '.join(candidates)}\n"
                         "help: the run has not finished its teacher stages yet")
    return max(found)


def curve_mean(curve: Sequence[tuple[int, float]]) -> float:
    """The time-average of a step curve over its eval points after step 0 (trapezoid rule over the steps):
    the normalised area under the recovery curve, which rewards recovering early as well as high."""
    if len(curve) < 2:
        raise ValueError("a curve needs its start and at least one eval point")
    area = sum((s1 - s0) * (v0 + v1) / 2 for (s0, v0), (s1, v1) in pairwise(curve))
    return area / (curve[-1][0] - curve[0][0])


@dataclass(frozen=True)
class Paired:
    """Paired difference ``a - b`` across seeds: mean, ``CONFIDENCE`` t interval (Student, n - 1 degrees of
    freedom) and percentile-bootstrap interval of the mean; intervals are None with fewer than two pairs."""

    diffs: list[float]
    mean: float
    t_interval: tuple[float, float] | None
    bootstrap: tuple[float, float] | None


def paired_difference(a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000, seed: int = 0
                      ) -> Paired:
    """Compare two arms seed by seed (``a[i]`` and ``b[i]`` come from seed i). Raises ValueError when the
    lengths differ or are zero.

    The t interval is ``mean ± t_{(1+c)/2, n-1} · s / sqrt(n)``; the bootstrap resamples the n differences
    with replacement (Efron & Tibshirani 1993, percentile method). With 3 seeds both are wide: that is the
    honest uncertainty of a 3-seed study."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired difference needs equal, non-zero lengths, got {len(a)} and {len(b)}")
    import numpy as np

    diffs = [x - y for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Paired(diffs, mean, None, None)
    from scipy.stats import t as student_t

    half = student_t.ppf((1 + CONFIDENCE) / 2, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    rng = np.random.default_rng(seed)
    arr = np.asarray(diffs)
    means = arr[rng.integers(0, len(arr), size=(resamples, len(arr)))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Paired(diffs, mean, (mean - half, mean + half), (float(low), float(high)))


def verdict(p: Paired, *, what: str, higher_is_better: bool = True) -> str:
    """One plain sentence: which arm did better on ``what`` (MOPD = a, GRPO = b), by how much, how sure."""
    sign = 1 if higher_is_better else -1
    better = "MOPD" if sign * p.mean > 0 else "continued GRPO"
    diff = f"MOPD − GRPO = {p.mean:+.3f}"
    if p.t_interval is None:
        lead = "MOPD and continued GRPO tied" if p.mean == 0 else f"{better} did better"
        return f"On {what}, {lead} ({diff}) in {len(p.diffs)} seed; no uncertainty estimate is possible from one seed."
    lo, hi = p.t_interval
    blo, bhi = p.bootstrap or (lo, hi)
    ci = (f"{CONFIDENCE:.0%} t interval [{lo:+.3f}, {hi:+.3f}], bootstrap [{blo:+.3f}, {bhi:+.3f}], "
          f"{len(p.diffs)} seeds")
    if lo > 0 or hi < 0:
        return f"{better} did better on {what}: {diff} ({ci}); the interval excludes 0."
    return f"No clear difference on {what}: {diff} ({ci}); the interval includes 0."


@dataclass(frozen=True)
class ArmResult:
    """One seed's outcome for both arms on domain A."""

    seed_run: str
    teacher: float
    target: float
    start: float                      # domain A's score where both arms start (the parent's last eval)
    items: int                        # items in domain A's eval set
    steps: dict[str, int | None]      # arm -> steps to reach the target
    budget: dict[str, int]            # arm -> last eval step (the steps it ran)
    every: dict[str, int]             # arm -> steps between its last two eval points
    area: dict[str, float]            # arm -> curve_mean of domain A
    final: dict[str, dict[str, float]]  # arm -> {"domain.eval": last score}

    def censored_steps(self, arm: str) -> int:
        """Steps to the target, with "not reached" counted as the next eval point after the budget: a lower
        bound on the true value, so a paired difference built from it leans towards 0 (conservative)."""
        found = self.steps[arm]
        return found if found is not None else self.budget[arm] + self.every[arm]


def analyse_run(records: Sequence[dict], *, arms: Sequence[str], parent: str, key_a: str,
                candidates: Sequence[str], name: str = "") -> ArmResult:
    """Both arms of one seed: teacher score on ``key_a``, target = ``RECOVERY`` × teacher, the score where
    the arms start, steps to reach the target, area under the domain-A curve, and every eval's last score.
    Raises StudyError if the parent or an arm has no eval points."""
    scores = last_scores(records)
    teacher = teacher_score(scores, candidates, key_a)
    target = RECOVERY * teacher
    if key_a not in scores.get(parent, {}):
        raise StudyError(f"run {name or '?'}: stage `{parent}`, where the arms start, has no score on `{key_a}`\n"
                         "help: wait until the run has finished it")
    steps, budget, every, area, final = {}, {}, {}, {}, {}
    for arm in arms:
        curve = arm_curve(records, arm, parent, key_a)
        if len(curve) < 2 or arm not in scores:
            raise StudyError(f"run {name or '?'}: stage `{arm}` has no eval points on `{key_a}`\n"
                             "help: wait until both arms have finished, or set `eval_every` on them")
        steps[arm] = steps_to_reach(curve, target)
        budget[arm] = curve[-1][0]
        every[arm] = curve[-1][0] - curve[-2][0]
        area[arm] = curve_mean(curve)
        final[arm] = scores[arm]
    items = max(int(r["n"]) for r in records if r["stage"] == parent and f"{r['domain']}.{r['eval']}" == key_a)
    return ArmResult(name, teacher, target, scores[parent][key_a], items, steps, budget, every, area, final)


def binomial_se(p: float, n: int) -> float:
    """Standard error of a pass@1 score ``p`` measured on ``n`` items, ``sqrt(p (1 - p) / n)`` (binomial).
    Raises ValueError for ``n < 1``."""
    if n < 1:
        raise ValueError("no eval items")
    return score_se(p, n)


def regression_is_real(teacher: float, start: float, n: int) -> bool:
    """Whether domain A's drop from its teacher to the arms' start exceeds the eval's own noise: the drop is
    larger than the ``CONFIDENCE`` normal quantile times the standard error of a difference of two
    independent n-item pass@1 scores."""
    z = statistics.NormalDist().inv_cdf((1 + CONFIDENCE) / 2)
    return teacher - start > z * math.hypot(binomial_se(teacher, n), binomial_se(start, n))


def steps_cell(steps: int | None, budget: int) -> str:
    return str(steps) if steps is not None else f"not reached (> {budget})"


def steps_summary(results: Sequence[ArmResult], arm: str) -> str:
    """Mean ± std of the steps over the seeds that reached the target, and how many did."""
    reached = [r.steps[arm] for r in results if r.steps[arm] is not None]
    head = f"reached in {len(reached)}/{len(results)} seeds"
    return head + (f"; {spread([float(s) for s in reached])} steps where reached" if reached else "")
