"""The memory-per-GPU lower bound (CAS409): parameter counts and the ZeRO model-state arithmetic."""

from __future__ import annotations

import pytest

from cascadec.checks.memory import model_state_bytes, parameter_count
from cascadec.compiler import compile_source
from cascadec.model import PACKAGED_MODELS

SPEC = """cascade "m" {{
  base = model("{model}")
  resources {{ gpus = 8  memory_per_gpu = {memory}  strategy = {strategy}  precision = bf16 }}
  domain d {{ train = gym("basic_arithmetic")  reward = gym() }}
  stage s = grpo(base) {{ steps = 1  lr = 1e-6  kl = {kl} }}
}}
"""


@pytest.mark.parametrize("name, params", [
    ("Qwen/Qwen3-8B-Base", 8e9), ("nvidia/Nemotron-3-Nano-30B-A3B-Base", 30e9),
    ("meta-llama/Llama-3.1-8B-Instruct", 8e9), ("Qwen/Qwen2.5-0.5B", 0.5e9),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", 135e6), ("gpt2", None), ("org/model-v2B", None),
])
def test_parameter_count_from_the_name(name, params):
    assert parameter_count("hub", name) == params


def test_packaged_models_have_a_parameter_count_and_tiny_ones_none():
    assert all(parameter_count("packaged", name) == n for name, n in PACKAGED_MODELS.items())
    assert parameter_count("tiny", "llama") is None


def _stage(strategy: str, gpus: int = 8, precision: str = "bf16"):
    text = SPEC.format(model="org/m-1B", memory="1TB", strategy=strategy, kl=0).replace(
        "gpus = 8", f"gpus = {gpus}").replace("precision = bf16", f"precision = {precision}")
    plan = compile_source(text, "m.cascade").plan
    assert plan is not None
    return plan.stages[0]


@pytest.mark.parametrize("strategy, per_param", [
    ("ddp", 16), ("zero1", 2 + 2 + 12 / 8), ("zero2", 2 + 14 / 8), ("zero3", 16 / 8), ("fsdp2", 16 / 8),
])
def test_model_states_follow_the_zero_paper(strategy, per_param):
    trained, frozen = model_state_bytes(1000, _stage(strategy), frozen=2)
    assert trained == pytest.approx(per_param * 1000) and frozen == 2 * 2 * 1000


def test_fp32_keeps_no_master_copy():
    assert model_state_bytes(1000, _stage("ddp", precision="fp32"), frozen=1) == (16 * 1000, 4 * 1000)


@pytest.mark.parametrize("memory, strategy, kl, warned", [
    ("80GB", "ddp", 0, True),      # 8B x 16 bytes = 128 GB
    ("80GB", "zero3", 0, False),   # 16 GB per rank
    ("20GB", "zero3", 0.03, True),  # + a 16 GB bf16 reference on every rank
    ("200GB", "ddp", 0.03, False),
])
def test_warning_only_above_the_bound(memory, strategy, kl, warned):
    result = compile_source(SPEC.format(model="Qwen/Qwen3-8B", memory=memory, strategy=strategy, kl=kl), "m.cascade")
    assert [d.code for d in result.diagnostics] == (["CAS409"] if warned else [])
    assert result.plan is not None  # a warning, not an error


def test_no_estimate_without_memory_per_gpu():
    text = SPEC.format(model="Qwen/Qwen3-235B", memory="80GB", strategy="ddp", kl=0)
    text = text.replace("  memory_per_gpu = 80GB", "")
    assert compile_source(text, "m.cascade").diagnostics == []
