"""math_verify and gym rewards: known right and wrong answers, real reasoning-gym items, thread safety."""

from __future__ import annotations

import threading

import pytest
import reasoning_gym

from cascadec.contract.plan import RewardSpec
from runtime.rewards import RewardError, build_reward


def test_math_verify_right_and_wrong(mk):
    r = build_reward(RewardSpec(kind="math_verify", args={"answer": {"field": "answer"}}))
    s = [mk(answer="-4"), mk(answer="\\frac{1}{2}"), mk(answer="288"), mk(answer="288"), mk(answer="3")]
    c = ["so \\boxed{-4}", "<think>maybe 1/3</think>The answer is 0.5", "Answer: 288", "I think 287", ""]
    assert r(s, c) == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_math_verify_scores_only_after_think(mk):
    r = build_reward(RewardSpec(kind="math_verify"))
    assert r([mk(answer="7")], ["<think>\\boxed{7}</think> so it is \\boxed{8}"]) == [0.0]


def test_math_verify_from_a_thread_is_not_a_silent_zero(mk):
    """peers.md pain point 6: signal timeouts fail outside the main thread; we must still score 1."""
    r = build_reward(RewardSpec(kind="math_verify"))
    out: list = []
    t = threading.Thread(target=lambda: out.append(r([mk(answer="42"), mk(answer="42")],
                                                     ["\\boxed{42}", "\\boxed{41}"])))
    t.start()
    t.join(timeout=120)
    assert out == [[1.0, 0.0]]


def test_math_verify_bad_gold_is_an_error(mk):
    r = build_reward(RewardSpec(kind="math_verify"))
    with pytest.raises(RewardError, match="gold answer"):
        r([mk(answer="")], ["\\boxed{1}"])


def test_missing_column_names_sample_and_columns(mk):
    r = build_reward(RewardSpec(kind="math_verify", args={"answer": {"field": "solution"}}))
    with pytest.raises(RewardError, match="no column `solution`"):
        r([mk(answer="1", id="math/3")], ["1"])


@pytest.mark.parametrize("name", ["basic_arithmetic", "gsm_symbolic", "chain_sum"])
def test_gym_real_items(mk, name):
    ds = reasoning_gym.create_dataset(name, size=4, seed=3)
    r = build_reward(RewardSpec(kind="gym"))
    samples = [mk(prompt=e["question"], answer=e["answer"], id=f"g/{i}", entry=e) for i, e in enumerate(ds)]
    right = [f"<think>work</think>\n<answer>{e['answer']}</answer>" for e in ds]
    assert r(samples, right) == [1.0] * 4
    assert r(samples, ["Answer: banana"] * 4) == [0.0] * 4
    assert all(v < 1.0 for v in r(samples, [f"Answer: {e['answer']}1" for e in ds]))


def test_gym_rebuilds_entry_from_columns(mk):
    e = reasoning_gym.create_dataset("basic_arithmetic", size=1, seed=0)[0]
    r = build_reward(RewardSpec(kind="gym", args={"name": "basic_arithmetic"}))
    s = mk(prompt=e["question"], answer=e["answer"], metadata=e["metadata"])
    assert r([s, s], [f"Answer: {e['answer']}", "Answer: nope"]) == [1.0, 0.0]


def test_gym_unknown_dataset():
    with pytest.raises(RewardError, match="no dataset `no_such_gym`"):
        build_reward(RewardSpec(kind="gym", args={"name": "no_such_gym"}))


def test_unknown_kind_suggests():
    with pytest.raises(RewardError, match="did you mean `math_verify`"):
        build_reward(RewardSpec(kind="math_verfy"))


def test_unknown_argument():
    with pytest.raises(RewardError, match="no argument `anwser`"):
        build_reward(RewardSpec(kind="math_verify", args={"anwser": "1"}))


def test_wrong_batch_length(mk):
    r = build_reward(RewardSpec(kind="exact"))
    with pytest.raises(RewardError, match="2 samples but 1 completions"):
        r([mk(), mk()], ["x"])
