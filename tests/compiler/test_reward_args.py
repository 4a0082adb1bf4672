"""Reward arguments are checked at compile time against a table that mirrors the runtime's reward classes."""

from __future__ import annotations

import inspect

import pytest

from cascadec.compiler import compile_source
from cascadec.contract.kinds import REWARD_KINDS, load

SPEC = """cascade "r" {{
  base = model("org/m")
  domain d {{ train = gym("basic_arithmetic")  reward = {reward} }}
  stage s = grpo(base) {{ steps = 1  lr = 1e-6 }}
}}
"""


def _codes(reward: str) -> list[tuple[str, str]]:
    result = compile_source(SPEC.format(reward=reward), "r.cascade")
    return [(d.code, d.message) for d in result.diagnostics]


def test_registry_args_match_runtime_signatures():
    pytest.importorskip("runtime.rewards")
    for kind in REWARD_KINDS.values():
        if kind.parts:  # composites: built from their parts by runtime.rewards.build_reward
            continue
        params = inspect.signature(load(kind.impl)).parameters
        named = {n: p for n, p in params.items() if n != "origin" and p.kind is not inspect.Parameter.VAR_KEYWORD}
        assert set(kind.args) == set(named), kind.name
        assert {n for n, a in kind.args.items() if a.required} == \
            {n for n, p in named.items() if p.default is inspect.Parameter.empty}, kind.name
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        assert kind.open_args == takes_any, kind.name


@pytest.mark.parametrize("reward, code, words", [
    ('unit_tests(tests = field("t"), timeout = 6GiB)', "CAS202", "takes a time"),
    ('unit_tests(tests = field("t"), memory = 6s)', "CAS202", "takes a memory size"),
    ('unit_tests(tests = field("t"), memory = 512)', "CAS202", "memory size with its unit"),
    ('unit_tests(tests = field("t"), timeot = 6s)', "CAS301", "has no argument `timeot`"),
    ("unit_tests(memory = 1GiB)", "CAS203", "needs argument `tests`"),
    ('py("no_colon")', "CAS200", "package.module:function"),
    ("py()", "CAS203", "needs argument `fn`"),
    ("instructions(mode = alll)", "CAS200", "cannot be `alll`"),
    ('reward_model("m", batch_size = 2.5)', "CAS200", "takes an integer"),
    ("math_verify(timeout = -1s)", "CAS201", "must be positive"),
    ("gym(name = 3)", "CAS200", "takes a string"),
    ("weighted(math_verify(bogus = 1), exact(), weights = [1, 1])", "CAS301", "has no argument `bogus`"),
])
def test_bad_reward_arguments(reward, code, words):
    found = _codes(reward)
    assert len(found) == 1 and found[0][0] == code and words in found[0][1], found


@pytest.mark.parametrize("reward", [
    'unit_tests(tests = field("t"), timeout = 6, memory = 1073741824B, mode = fraction, workers = 4)',
    'py("pkg.mod:fn", anything = 3, other = "x")',
    'judge("m", mode = pointwise, pairs = "circular", reference = field("a"), max_new_tokens = 1k)',
    'exact(answer = field("a"), normalize = off, code_switch_penalty = -1)',
    'json_schema(schema = {type = "object"})',
])
def test_good_reward_arguments(reward):
    assert _codes(reward) == []
