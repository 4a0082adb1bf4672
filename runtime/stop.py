"""Adaptive stop rules (``until`` clauses) evaluated at a stage's eval points.

A stage's ``until`` list is a disjunction: the stage stops at the first eval point where any clause holds
(``until math.gsm >= teacher(math).gsm or steps >= 52``). Nemotron-Cascade 2 stopped its stages by step
counts chosen from validation curves and by observed pathologies (paper-notes §2.5); these rules let a spec
state such criteria instead of a fixed step count.

Training-metric clauses (``until train.truncated_frac >= 0.1``, ``train.response_len > 12k``) read the last
finished step's metrics line, so they are exact at every step: Nemotron-Cascade 1 switched its math-RL
length stages when about 10% of responses hit the length limit (paper-notes §4.4), Cascade 2 stopped
long-context RL when generated tokens grew rapidly (§2.5).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

from cascadec.contract.errors import UserError
from cascadec.contract.plan import Condition

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


class StopRuleError(UserError, ValueError):
    """An ``until`` clause that cannot be evaluated (the message says which clause and how to fix it)."""


def eval_key(domain: str | None, eval_name: str | None) -> str:
    """The ``domain.eval`` key used in rules, reports and ``teacher_scores``."""
    return f"{domain}.{eval_name}"


def score_history(evals: Sequence[Mapping[str, Any]], domain: str | None, eval_name: str | None) -> list[tuple[int, float]]:
    """``(step, score)`` pairs of one ``domain.eval`` in step order (the last row wins for a repeated step)."""
    by_step: dict[int, float] = {}
    for row in evals:
        if row.get("domain") == domain and row.get("eval") == eval_name:
            by_step[int(row.get("step", 0))] = float(row["score"])
    return sorted(by_step.items())


def _threshold(cond: Condition, evals: Sequence[Mapping[str, Any]], teacher_scores: Mapping[str, Mapping[str, float]]) -> str | None:
    key = eval_key(cond.domain, cond.eval)
    history = score_history(evals, cond.domain, cond.eval)
    if not history:
        return None
    at_step, score = history[-1]
    target, described = _target(cond, teacher_scores)
    if _OPS[cond.op](score, target):
        return f"{key} = {score:.4g} {cond.op} {described} at step {at_step}"
    return None


def _target(cond: Condition, teacher_scores: Mapping[str, Mapping[str, float]]) -> tuple[float, str]:
    """A threshold's target value and how to show it (a relative one names its teacher's score)."""
    key = eval_key(cond.domain, cond.eval)
    target = cond.value
    described = f"{cond.value:g}"
    if cond.relative_to is not None:
        # a domain without its own teacher learns from the `default` one, so that is its teacher here too
        scores = teacher_scores.get(cond.relative_to, teacher_scores.get("default"))
        if scores is None:
            raise StopRuleError(
                f"until rule `{key} {cond.op} teacher({cond.relative_to}).{cond.eval}` names no teacher of this stage"
                f"\nhelp: add `{cond.relative_to} = <stage>` or `default = <stage>` to the stage's `teachers` block, "
                "or compare with a number"
            )
        if key not in scores:
            raise StopRuleError(
                f"until rule `{key} {cond.op} teacher({cond.relative_to}).{cond.eval}`: the teacher has no recorded "
                f"`{key}` score\nhelp: the teacher stage must have finished and run the `{key}` eval"
            )
        teacher = scores[key]
        target = cond.value * teacher
        scale = "" if cond.value == 1.0 else f"{cond.value:g} × "
        described = f"{target:.4g} ({scale}teacher({cond.relative_to}).{cond.eval} = {teacher:.4g})"
    return target, described


def exhausted(conditions: Sequence[Condition], evals: Sequence[Mapping[str, Any]], step: int,
              teacher_scores: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """The stop reason of a stage that ran all its ``step`` steps: ``steps exhausted (N)``, then each
    threshold of its ``until`` rule that never held, with its target and the last score reached
    (``evals`` and ``teacher_scores`` as in :func:`should_stop`)."""
    parts = [f"steps exhausted ({step})"]
    for cond in conditions:
        if cond.kind != "threshold":
            continue
        key = eval_key(cond.domain, cond.eval)
        history = score_history(evals, cond.domain, cond.eval)
        _, described = _target(cond, teacher_scores or {})
        reached = f"last {history[-1][1]:.4g} at step {history[-1][0]}" if history else "never evaluated"
        parts.append(f"`{key} {cond.op} {described}` not reached ({reached})")
    return "; ".join(parts)


def _plateau(cond: Condition, evals: Sequence[Mapping[str, Any]]) -> str | None:
    key = eval_key(cond.domain, cond.eval)
    if cond.patience < 1:
        raise StopRuleError(
            f"until rule `plateau({key})` has patience {cond.patience}\nhelp: give `patience` of at least 1 eval point"
        )
    history = score_history(evals, cond.domain, cond.eval)
    if not history:
        return None
    # Keras EarlyStopping semantics: an eval point improves only if it beats the best so far by more
    # than min_delta; the rule fires after `patience` eval points in a row without improvement.
    best_step, best = history[0]
    wait = 0
    for step, score in history[1:]:
        if score - cond.min_delta > best:
            best_step, best, wait = step, score, 0
        else:
            wait += 1
    if wait >= cond.patience:
        return (
            f"{key} plateaued: no gain above {cond.min_delta:g} over its best {best:.4g} (step {best_step}) "
            f"for {wait} eval points, by step {history[-1][0]}"
        )
    return None


def _metric(cond: Condition, metrics: Mapping[str, float] | None) -> str | None:
    if metrics is None:
        return None
    if cond.metric not in metrics:
        known = ", ".join(sorted(k for k in metrics if "/" not in k))
        raise StopRuleError(
            f"until rule `train.{cond.metric} {cond.op} {cond.value:g}`: this stage logs no `{cond.metric}` "
            f"metric\nhelp: use one of {known}"
        )
    value = float(metrics[cond.metric])
    if _OPS[cond.op](value, cond.value):
        return f"train.{cond.metric} = {value:.4g} {cond.op} {cond.value:g} at step {metrics.get('step', '?')}"
    return None


def should_stop(
    conditions: Sequence[Condition],
    evals: Sequence[Mapping[str, Any]],
    step: int,
    teacher_scores: Mapping[str, Mapping[str, float]] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> str | None:
    """The reason to stop the stage now, or None to go on.

    Args:
        conditions: the stage's ``until`` clauses (any one that holds stops the stage).
        evals: this stage's eval rows so far (``{"step", "domain", "eval", "score", ...}`` as in
            ``evals.jsonl``); a threshold looks at the latest score of its ``domain.eval``, a plateau at
            the whole history. Rows of other stages must not be passed.
        step: optimizer steps completed so far in this stage.
        teacher_scores: teacher domain (or ``"default"``) -> ``{"domain.eval": score}`` recorded for that
            teacher (see :func:`runtime.teachers.recorded_teacher_scores`); needed only by relative
            thresholds. ``teacher(d)`` uses the ``default`` entry when ``d`` has none of its own.
        metrics: the last finished step's metrics line (``{"step", "loss", "truncated_frac", ...}``), read by
            ``train.<metric>`` clauses; None before the first step.

    Returns:
        A human-readable stop reason (recorded in ``state.json``), or None. Calling it again at a later
        step without new evals gives the same answer for eval-based clauses, so the loop may call it at
        every step (which makes a ``steps`` cap exact even between eval points).

    Raises:
        StopRuleError: a relative threshold whose teacher or teacher score is missing, a plateau rule
            with ``patience < 1``, or a ``train.<metric>`` the stage does not log.
    """
    teacher_scores = teacher_scores or {}
    for cond in conditions:
        if cond.kind == "steps":
            if step >= cond.value:
                return f"steps {step} >= {cond.value:g}"
        elif cond.kind == "threshold":
            reason = _threshold(cond, evals, teacher_scores)
            if reason:
                return reason
        elif cond.kind == "plateau":
            reason = _plateau(cond, evals)
            if reason:
                return reason
        elif cond.kind == "metric":
            reason = _metric(cond, metrics)
            if reason:
                return reason
    return None
