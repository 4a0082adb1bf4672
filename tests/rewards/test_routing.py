"""Routing rows to rewards by a data field: each row reaches its route's reward (recorded calls), weights
scale a route, `default` catches the rest, and a row without a route gets no reward (NaN, never a silent
zero), is counted and warns once."""

from __future__ import annotations

import math

import pytest

from cascadec.contract.plan import RewardSpec
from runtime.rewards import RewardError, build_reward
from runtime.routing import RoutedReward, reward_metrics
from runtime.rows import Sample


class Recorder:
    def __init__(self, name: str, value: float) -> None:
        self.name, self.value, self.calls = name, value, []

    def __call__(self, samples, completions):
        self.calls.append([s.id for s in samples])
        return [self.value] * len(samples)


def _s(i, source):
    return Sample(id=f"d/{i}", domain="d", prompt="p", meta={"data_source": source} if source else {})


def test_each_row_goes_to_its_route_and_is_counted():
    math, code, rest = Recorder("math", 1.0), Recorder("code", 2.0), Recorder("rest", 3.0)
    reward = RoutedReward("data_source", {"gsm8k": math, "apps": code, "default": rest}, {"apps": 0.5})
    samples = [_s(0, "gsm8k"), _s(1, "apps"), _s(2, "other"), _s(3, None), _s(4, "gsm8k")]
    assert reward(samples, ["c"] * 5) == [1.0, 1.0, 3.0, 3.0, 1.0]
    assert math.calls == [["d/0", "d/4"]] and code.calls == [["d/1"]] and rest.calls == [["d/2", "d/3"]]
    assert reward_metrics(reward) == {"route/apps": 1.0, "route/default": 2.0, "route/gsm8k": 2.0, "unrouted": 0.0}


def test_a_row_without_a_route_gets_no_reward_is_counted_and_warns_once():
    math_reward = Recorder("m", 1.0)
    reward = RoutedReward("data_source", {"gsm8k": math_reward})
    with pytest.warns(RuntimeWarning, match="`data_source` = 'apps', which has no route") as seen:
        got = reward([_s(0, "apps"), _s(1, "gsm8k"), _s(2, None)], ["c"] * 3)
        assert math.isnan(reward([_s(3, "apps")], ["c"])[0])
    assert len(seen) == 1  # once per reward, not per row or call
    assert math.isnan(got[0]) and got[1] == 1.0 and math.isnan(got[2])
    assert math_reward.calls == [["d/1"]]  # unrouted rows never reach a route's reward
    reward([_s(0, "apps"), _s(1, "gsm8k"), _s(2, None)], ["c"] * 3)
    assert reward_metrics(reward) == {"route/gsm8k": 1.0, "unrouted": 2.0}


def test_route_spec_builds_and_logs_nested_extras(tmp_path, monkeypatch):
    (tmp_path / "route_rewards.py").write_text(
        "def score(data_source, solution_str, ground_truth, extra_info=None):\n"
        "    return {'score': float(solution_str == ground_truth), 'len': len(solution_str)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = RewardSpec(kind="route", args={"by": "data_source", "keys": ["gsm8k", "default"]},
                      parts=[RewardSpec(kind="py", args={"fn": "route_rewards:score", "contract": "verl"}),
                             RewardSpec(kind="exact", args={})], weights=[2.0, 1.0])
    reward = build_reward(spec)
    samples = [Sample(id="d/0", domain="d", prompt="p", answer="4", meta={"data_source": "gsm8k"}),
               Sample(id="d/1", domain="d", prompt="p", answer="5", meta={"data_source": "x"})]
    assert reward(samples, ["4", "Answer: 5"]) == [2.0, 1.0]
    assert reward_metrics(reward) == {"route/default": 1.0, "route/gsm8k": 1.0, "unrouted": 0.0, "gsm8k/len": 1.0}
