"""`until` rules: thresholds (absolute and teacher-relative), plateau with patience, step caps."""

from __future__ import annotations

import pytest

from cascadec.contract.plan import Condition
from runtime.stop import StopRuleError, score_history, should_stop


def rows(*scores, domain="math", name="gsm", every=10):
    return [{"stage": "mopd", "step": every * (i + 1), "domain": domain, "eval": name, "metric": "pass@1",
             "score": s, "n": 64} for i, s in enumerate(scores)]


def thr(value, op=">=", relative_to=None):
    return Condition(kind="threshold", domain="math", eval="gsm", op=op, value=value, relative_to=relative_to)


def test_absolute_threshold_uses_the_latest_score():
    cond = [thr(0.6)]
    assert should_stop(cond, rows(0.5), 10, {}) is None
    assert should_stop(cond, rows(0.7, 0.5), 20, {}) is None  # an earlier peak does not count
    reason = should_stop(cond, rows(0.5, 0.6), 20, {})
    assert reason == "math.gsm = 0.6 >= 0.6 at step 20"
    assert should_stop([thr(0.6, op=">")], rows(0.5, 0.6), 20, {}) is None
    assert should_stop([thr(0.3, op="<")], rows(0.5, 0.2), 20, {}) == "math.gsm = 0.2 < 0.3 at step 20"


def test_threshold_without_any_eval_yet_does_not_fire():
    assert should_stop([thr(0.0)], rows(0.9, domain="code"), 10, {}) is None


def test_relative_threshold_uses_the_teacher_recorded_score():
    teachers = {"math": {"math.gsm": 0.8, "code.he": 0.1}}
    assert should_stop([thr(1.0, relative_to="math")], rows(0.7), 10, teachers) is None
    reason = should_stop([thr(1.0, relative_to="math")], rows(0.7, 0.81), 20, teachers)
    assert reason == "math.gsm = 0.81 >= 0.8 (teacher(math).gsm = 0.8) at step 20"
    reason = should_stop([thr(0.95, relative_to="math")], rows(0.77), 10, teachers)
    assert reason is not None and "0.76 (0.95 × teacher(math).gsm = 0.8)" in reason


def test_relative_threshold_falls_back_to_the_default_teacher():
    teachers = {"code": {"math.gsm": 0.9}, "default": {"math.gsm": 0.6}}
    reason = should_stop([thr(1.0, relative_to="math")], rows(0.7), 10, teachers)
    assert reason == "math.gsm = 0.7 >= 0.6 (teacher(math).gsm = 0.6) at step 10"


def test_relative_threshold_errors_name_the_rule():
    with pytest.raises(StopRuleError, match=r"names no teacher.*\nhelp: add `math = <stage>` or `default = <stage>`"):
        should_stop([thr(1.0, relative_to="math")], rows(0.7), 10, {"code": {"math.gsm": 0.9}})
    with pytest.raises(StopRuleError, match="no recorded `math.gsm` score"):
        should_stop([thr(1.0, relative_to="math")], rows(0.7), 10, {"math": {"code.he": 0.3}})


def plateau(patience, min_delta=0.0):
    return Condition(kind="plateau", domain="math", eval="gsm", patience=patience, min_delta=min_delta)


def test_plateau_waits_for_patience_eval_points_without_gain():
    assert should_stop([plateau(2)], rows(0.5), 10, {}) is None
    assert should_stop([plateau(2)], rows(0.5, 0.5), 20, {}) is None
    reason = should_stop([plateau(2)], rows(0.5, 0.5, 0.45), 30, {})
    assert reason == "math.gsm plateaued: no gain above 0 over its best 0.5 (step 10) for 2 eval points, by step 30"
    # a new best resets the wait
    assert should_stop([plateau(2)], rows(0.5, 0.4, 0.6, 0.55), 40, {}) is None


def test_plateau_min_delta_counts_small_gains_as_no_gain():
    # gains are measured against the best so far: +0.03 and +0.04 are below min_delta, +0.06 is not
    assert should_stop([plateau(2, 0.05)], rows(0.5, 0.53, 0.54), 30, {}) is not None
    assert should_stop([plateau(2, 0.05)], rows(0.5, 0.53, 0.56), 30, {}) is None
    assert should_stop([plateau(2, 0.0)], rows(0.5, 0.53, 0.54), 30, {}) is None


def test_plateau_needs_patience():
    with pytest.raises(StopRuleError, match="patience 0"):
        should_stop([plateau(0)], rows(0.5), 10, {})


def test_steps_cap_and_disjunction():
    rule = [thr(0.9), Condition(kind="steps", value=52)]
    assert should_stop(rule, rows(0.5), 51, {}) is None
    assert should_stop(rule, rows(0.5), 52, {}) == "steps 52 >= 52"
    assert should_stop(rule, rows(0.95), 30, {}).startswith("math.gsm = 0.95")
    assert should_stop([], rows(0.95), 30, {}) is None


def test_score_history_orders_by_step_and_keeps_the_last_row_of_a_step():
    data = rows(0.1, 0.2) + [{"step": 5, "domain": "math", "eval": "gsm", "score": 0.3},
                             {"step": 10, "domain": "math", "eval": "gsm", "score": 0.15}]
    assert score_history(data, "math", "gsm") == [(5, 0.3), (10, 0.15), (20, 0.2)]
