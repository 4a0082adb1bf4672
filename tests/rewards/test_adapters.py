"""Reward contracts: each adapter gives the rewards of calling the user's function by hand, the way the
framework it was written for calls it; dict returns log their extra values; extra arguments are checked."""

from __future__ import annotations

import textwrap

import pytest
import torch

from cascadec.contract.plan import RewardSpec
from runtime.rewards import RewardError, build_reward
from runtime.rows import Sample

USER_CODE = '''
import torch

def compute_score(data_source, solution_str, ground_truth, extra_info=None, bonus: float = 0.0):
    # veRL style: one call per completion, dict return with `score` and logged extras
    hit = float(ground_truth in solution_str)
    return {"score": hit + bonus + (0.5 if data_source == "gsm8k" else 0.0), "acc": hit,
            "idx": extra_info.get("index", -1), "pred": solution_str[:3]}

def accuracy_reward(completions, solution, **kwargs):
    # TRL / open-r1 style: conversational completions, dataset columns as keyword lists
    contents = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [1.0 if s in c else 0.0 for c, s in zip(contents, solution)]

def len_reward(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]

def reward_func(queries, prompts, labels):
    # OpenRLHF style: tensors in a dict
    r = torch.tensor([float(l in q[len(p):]) for q, p, l in zip(queries, prompts, labels)])
    return {"rewards": r, "scores": r * 2, "extra_logs": {"qlen": torch.tensor([float(len(q)) for q in queries])}}

def plain(samples, completions, scale: int = 1):
    return [scale * len(c) for c in completions]

def needs_secret(data_source, solution_str, ground_truth, secret):
    return 0.0

def returns_none(prompts, completions, **kwargs):
    return [None for _ in completions]
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_rewards.py").write_text(textwrap.dedent(USER_CODE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import user_rewards

    importlib.reload(user_rewards)
    return user_rewards


def _samples():
    chat = ({"role": "system", "content": "S"}, {"role": "user", "content": "what is 2+2?"})
    return [
        Sample(id="m/0", domain="math", prompt="1+1?", answer="2",
               meta={"data_source": "gsm8k", "extra_info": {"index": 0}, "solution": "2"}),
        Sample(id="m/1", domain="math", prompt="what is 2+2?", answer=None, messages=chat,
               meta={"reward_model": {"ground_truth": "4"}, "solution": "4"}),
    ]


def _py(fn, **args):
    return build_reward(RewardSpec(kind="py", args={"fn": f"user_rewards:{fn}", **args}))


def test_verl_contract_equals_calling_compute_score_by_hand(user_module):
    samples, comps = _samples(), ["it is 2", "five"]
    reward = _py("compute_score", contract="verl", bonus=0.25)
    by_hand = [user_module.compute_score("gsm8k", "it is 2", "2", {"index": 0}, bonus=0.25)["score"],
               user_module.compute_score("math", "five", "4", {}, bonus=0.25)["score"]]
    assert reward(samples, comps) == by_hand == [1.75, 0.25]
    assert reward.last_extras == {"acc": [1.0, 0.0], "idx": [0.0, -1.0]}  # the string `pred` is not a number


def test_trl_contract_equals_calling_the_function_by_hand(user_module):
    samples, comps = _samples(), ["2", "it is 4"]
    prompts = ["1+1?", list(samples[1].messages)]
    completions = ["2", [{"role": "assistant", "content": "it is 4"}]]
    assert _py("accuracy_reward", contract="trl")(samples, comps) == \
        user_module.accuracy_reward(completions, solution=["2", "4"]) == [1.0, 1.0]
    assert _py("len_reward", contract="trl")(samples, comps) == \
        user_module.len_reward(prompts, completions) == [1.0, 1.0]


def test_openrlhf_contract_equals_calling_reward_func_by_hand(user_module):
    sample = _samples()[0]
    reward = _py("reward_func", contract="openrlhf")
    by_hand = user_module.reward_func(["1+1? 2", "1+1? 3"], ["1+1?", "1+1?"], ["2", "2"])
    assert reward([sample, sample], [" 2", " 3"]) == by_hand["rewards"].tolist() == [1.0, 0.0]
    assert reward.last_extras == {"scores": [2.0, 0.0], "qlen": [6.0, 6.0]}


def test_cascadec_contract_with_typed_extra_argument(user_module):
    samples = _samples()
    assert _py("plain", scale=3)(samples, ["ab", "c"]) == user_module.plain(samples, ["ab", "c"], scale=3) == [6, 3]


@pytest.mark.parametrize("fn, args, match", [
    ("plain", {"scale": 1.5}, "annotates it `int`"),
    ("plain", {"scael": 2}, "does not take argument `scael`"),
    ("needs_secret", {"contract": "verl"}, "needs parameter `secret`"),
    ("plain", {"contract": "ray"}, "contract `ray` does not exist"),
])
def test_extra_arguments_are_checked_against_the_signature(user_module, fn, args, match):
    with pytest.raises(RewardError, match=match):
        _py(fn, **args)


def test_none_is_not_silently_a_zero(user_module):
    with pytest.raises(RewardError, match="returned None"):
        _py("returns_none", contract="trl")(_samples(), ["a", "b"])
