"""exact, choice, json_schema, weighted, combined_if_rm, code-switch penalty, overlong helper, py rewards."""

from __future__ import annotations

import math
import textwrap

import pytest

from cascadec.contract.plan import Origin, RewardSpec
from runtime.rewards import RewardError, build_reward
from runtime.rewards.combine import apply_overlong, code_switched
from runtime.rewards.text import extract_choice


def test_exact(mk):
    r = build_reward(RewardSpec(kind="exact"))
    s = [mk(answer="Paris"), mk(answer=["NYC", "New York"]), mk(answer="Paris")]
    assert r(s, ["Answer: paris", "<answer>new  york</answer>", "London"]) == [1.0, 1.0, 0.0]
    strict = build_reward(RewardSpec(kind="exact", args={"normalize": False}))
    assert strict([mk(answer="Paris")], ["Answer: paris"]) == [0.0]


@pytest.mark.parametrize("text, letter", [
    ("The answer is (C).", "C"), ("\\boxed{B}", "B"), ("Answer: d", "D"), ("I pick (A) over (B)", "B"),
    ("<think>answer is A</think>\nAnswer: C", "C"), ("no idea", None), ("\\boxed{42}", None),
])
def test_extract_choice(text, letter):
    assert extract_choice(text) == letter


def test_choice_reward(mk):
    r = build_reward(RewardSpec(kind="choice", args={"answer": {"field": "answer"}}))
    assert r([mk(answer="b"), mk(answer=2), mk(answer="A")], ["Answer: B", "(C)", "Answer: B"]) == [1.0, 1.0, 0.0]
    with pytest.raises(RewardError, match="not a letter"):
        r([mk(answer="Z")], ["A"])


def test_json_schema(mk):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    r = build_reward(RewardSpec(kind="json_schema", args={"schema": schema}))
    s = mk()
    good = 'Sure:\n```json\n{"name": "Ann", "age": 3}\n```'
    assert r([s] * 4, [good, '{"name": "Ann"}', "not json", '{"name": "Ann", "age": "3"}']) == [1.0, 0.0, 0.0, 0.0]
    per_sample = build_reward(RewardSpec(kind="json_schema", args={"schema": {"field": "schema"}}))
    assert per_sample([mk(schema='{"type": "array"}')], ["[1, 2]"]) == [1.0]
    with pytest.raises(RewardError, match="invalid JSON schema"):
        build_reward(RewardSpec(kind="json_schema", args={"schema": {"type": 5}}))


def test_weighted(mk):
    spec = RewardSpec(kind="weighted", parts=[RewardSpec(kind="exact"),
                                              RewardSpec(kind="instructions", args={"ids": ["punctuation:no_comma"],
                                                                                    "kwargs": [{}]})],
                      weights=[0.7, 0.3])
    r = build_reward(spec)
    assert r([mk(answer="a, b")] * 2, ["a, b", "c"]) == pytest.approx([0.7, 0.3])
    with pytest.raises(RewardError, match="2 parts but 1 weights"):
        build_reward(spec.model_copy(update={"weights": [1.0]}))


def test_combined_if_rm_gate_and_sigmoid(mk, tmp_path, monkeypatch):
    """C1: r = R_IF + sigmoid(z_RM) if R_IF == 1 else 0, z normalised within the group (same sample id)."""
    module = tmp_path / "fake_rm.py"
    module.write_text("def length(samples, completions):\n    return [float(len(c)) for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = RewardSpec(kind="combined_if_rm", parts=[
        RewardSpec(kind="instructions", args={"ids": ["punctuation:no_comma"], "kwargs": [{}]}),
        RewardSpec(kind="py", args={"fn": "fake_rm:length"})])
    r = build_reward(spec)
    samples = [mk(id="p/0")] * 3 + [mk(id="p/1")]
    out = r(samples, ["aa", "aaaa", "b,b", "x"])
    lens = [2.0, 4.0, 3.0]
    mean = sum(lens) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in lens) / 3)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert out == pytest.approx([1 + sig((2 - mean) / std), 1 + sig((4 - mean) / std), 0.0, 1.5])


def test_code_switch_penalty(mk):
    assert code_switched("What is 2+2?", "It is 4, 因为")
    assert not code_switched("What is 2+2?", "Let α = 4; the answer is 4")
    assert not code_switched("2+2 等于多少？", "答案是 4 (four)")
    r = build_reward(RewardSpec(kind="exact", code_switch_penalty=-1.0))
    s = mk(prompt="Capital of France?", answer="Paris")
    assert r([s, s, s], ["Answer: Paris", "答案: Paris", "Answer: Rome"]) == [1.0, -1.0, 0.0]


def test_overlong_helper():
    assert apply_overlong([1.0, 1.0], [False, True], "penalty") == ([1.0, 0.0], [True, True])
    assert apply_overlong([1.0, 1.0], [False, True], "filter") == ([1.0, 1.0], [True, False])
    assert apply_overlong([1.0], [True], "none") == ([1.0], [True])


def test_py_reward_calls_function_with_args(mk, tmp_path, monkeypatch):
    pkg = tmp_path / "myrewards"
    (pkg / "code").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "code" / "__init__.py").write_text("")
    (pkg / "code" / "based.py").write_text(textwrap.dedent("""
        def strict_format(samples, completions, bonus=0.0):
            return [float(c.startswith("<answer>")) + bonus for c in completions]
        def wrong_count(samples, completions):
            return [1.0]
        def not_finite(samples, completions):
            return [float("nan")] * len(completions)
        make = lambda: None
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    r = build_reward(RewardSpec(kind="py", args={"fn": "myrewards.code.based:strict_format", "bonus": 0.5}))
    assert r([mk(), mk()], ["<answer>1</answer>", "1"]) == [1.5, 0.5]
    with pytest.raises(RewardError, match="returned 1 values for 3 completions"):
        build_reward(RewardSpec(kind="py", args={"fn": "myrewards.code.based:wrong_count"}))([mk()] * 3, ["a"] * 3)
    with pytest.raises(RewardError, match="non-finite"):
        build_reward(RewardSpec(kind="py", args={"fn": "myrewards.code.based:not_finite"}))([mk()], ["a"])


def test_py_reward_reference_errors():
    origin = Origin(path="x.cascade", line=3, column=12, end_line=3, end_column=40)
    with pytest.raises(RewardError, match="no `:`") as err:
        build_reward(RewardSpec(kind="py", args={"fn": "rewards.code_based.strict"}, origin=origin))
    assert str(err.value).startswith("x.cascade:3:12: ")
    assert 'py("rewards.code_based:strict")' in str(err.value)
    with pytest.raises(RewardError, match="cannot import module `no_such_module_xyz`"):
        build_reward(RewardSpec(kind="py", args={"fn": "no_such_module_xyz:f"}))
    with pytest.raises(RewardError, match="has no attribute `nope`"):
        build_reward(RewardSpec(kind="py", args={"fn": "math:nope"}))
