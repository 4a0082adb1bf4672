"""examples/verl-gsm8k: a hub-format parquet dataset with nested columns and chat-list prompts trains (one SFT
step and one GRPO step on a tiny model), with veRL-contract rewards routed by `data_source`."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from cascadec.compiler import compile_file
from runtime.entry import build_context, build_rewards
from runtime.data import MixtureSampler, load_source
from runtime.state import RunDir
from runtime.stages.grpo import GRPOTrainer
from runtime.stages.sft import SFTTrainer

EXAMPLE = Path(__file__).parents[2] / "examples" / "verl-gsm8k" / "verl-gsm8k.cascade"


def test_parquet_with_nested_columns_trains(tmp_path, monkeypatch):
    torch.set_num_threads(2)
    result = compile_file(EXAMPLE)
    assert result.plan is not None
    plan = result.plan
    samples = load_source(plan.domains["math"].train, domain="math")
    assert len(samples) == 64 and samples[0].answer == samples[0].meta["reward_model"]["ground_truth"]
    assert samples[1].messages[0]["role"] == "system" and samples[0].meta["completion"].startswith(samples[0].meta[
        "extra_info"]["solution"][:5])
    batch = MixtureSampler({"math": samples}, {"math": 1.0}, 8, seed=0).batch(0)

    sft = build_context(plan, plan.stage("sft"), RunDir(tmp_path / "run"))
    before = [p.detach().clone() for p in sft.policy.parameters()]
    metrics = SFTTrainer(sft).step(0, batch)
    assert math.isfinite(metrics["loss"]) and metrics["tokens"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, sft.policy.parameters()))

    rl_stage = plan.stage("rl").model_copy(update={"parent": "base"})
    rl = build_context(plan, rl_stage, RunDir(tmp_path / "run"))
    rl.rewards = build_rewards(plan)
    metrics = GRPOTrainer(rl).step(0, batch[:4])
    assert math.isfinite(metrics["loss"])
    routed = {k: v for k, v in metrics.items() if k.startswith("reward/math/route/")}
    assert sum(routed.values()) == 16 and set(routed) <= {"reward/math/route/openai/gsm8k",
                                                           "reward/math/route/lighteval/MATH"}
