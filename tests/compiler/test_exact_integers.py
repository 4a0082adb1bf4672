"""Integers are exact through the compiler (issue 15), with the range error at the real bound 2^63 - 1."""

from __future__ import annotations

import json

import pytest

from cascadec.compiler import compile_source

SPEC = '''cascade "ints" {{
  seed = {seed}
  base = model(tiny(llama, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1,
      num_attention_heads = 2, num_key_value_heads = 1))
  domain d {{
    train = gym("chain_sum", size = {size}, seed = {seed})
    reward = gym()
  }}
  stage s = grpo(base) on d {{ steps = 1  lr = 1e-3 }}
}}
'''


def _plan(seed: str, size: str = "8") -> dict:
    result = compile_source(SPEC.format(seed=seed, size=size), "ints.cascade")
    assert result.ok, [d.message for d in result.diagnostics]
    return json.loads(result.plan.to_json())


@pytest.mark.parametrize("seed", [2**53 + 1, 9007199254740993, 2**63 - 1, 12_345_678_901_234_567])
def test_integers_above_2_to_53_stay_exact(seed):
    plan = _plan(str(seed))
    assert plan["seed"] == seed and plan["stages"][0]["seed"] == seed
    assert plan["domains"]["d"]["train"]["seed"] == seed


def test_units_keep_integers_exact():
    plan = _plan("1", size="8Ki")
    assert plan["domains"]["d"]["train"]["size"] == 8192
    big = _plan("1", size="9007199254740993")
    assert big["domains"]["d"]["train"]["size"] == 9007199254740993


@pytest.mark.parametrize("text", [str(2**63), "1" + "0" * 5000, "9223372036854775808k"])
def test_past_2_to_63_is_a_range_error_not_a_rounding(text):
    result = compile_source(SPEC.format(seed=text, size="8"), "ints.cascade")
    assert [d.code for d in result.diagnostics][:1] == ["CAS201"]
    assert "at most 2^63 - 1" in (result.diagnostics[0].help or "")
