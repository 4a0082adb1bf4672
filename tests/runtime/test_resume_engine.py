"""A resumed stage's rollout engine samples from the restored weights, not from the stage's starting ones.

The engine is built with the context, before ``load_checkpoint_state`` restores ``ckpt/``; an engine that
decodes from its own copy (the fast engine's bf16 copy of fp32 master weights, vLLM) must be refreshed then.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cascadec.contract.plan import (
    DataSource, Domain, GRPOParams, ModelRef, Optim, Plan, Resources, RewardSpec, Schedule, Stage,
)
from runtime.data import Sample
from runtime.entry import build_context
from runtime.loop import load_checkpoint_state, save_checkpoint
from runtime.rollout.fast import FastRolloutEngine
from runtime.stages.grpo import GRPOTrainer
from runtime.state import RunDir

from dist_helpers import letters_reward

TINY = ModelRef(kind="tiny", name="llama", config={"hidden_size": 32, "intermediate_size": 64,
                                                    "num_hidden_layers": 2, "num_attention_heads": 2,
                                                    "num_key_value_heads": 1})


def test_resume_refreshes_the_engines_own_copy(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    params = GRPOParams(optim=Optim(lr=Schedule(peak=1e-2)), steps=2, prompts_per_step=2, rollouts_per_prompt=4,
                        micro_batch=8, max_response=6)
    domain = Domain(name="toy", train=DataSource(kind="inline", rows=[{"prompt": "x"}]),
                    reward=RewardSpec(kind="exact"))
    stage = Stage(name="rl", kind="grpo", parent="base", domains={"toy": 1.0}, params=params,
                  resources=Resources(device="cpu", precision="fp32"))
    plan = Plan(name="r", base=TINY, domains={"toy": domain}, stages=[stage])
    rd = RunDir(tmp_path)
    ctx = build_context(plan, stage, rd)
    ctx.rewards["toy"] = letters_reward
    trainer = GRPOTrainer(ctx)
    trainer.step(0, [Sample(id=f"toy/train/{i}", domain="toy", prompt=f"p{i}") for i in range(2)])
    save_checkpoint(ctx, trainer, 1)
    trained = {k: v.detach().clone() for k, v in ctx.unwrapped_policy().named_parameters()}

    fresh = build_context(plan, stage, rd)
    # An engine with its own bf16 copy, built from the starting weights as build_context builds engines.
    fresh.engine = FastRolloutEngine(fresh.policy, fresh.tokenizer, dtype=torch.bfloat16)
    start = dict(fresh.engine.model.named_parameters())
    assert any(not torch.equal(start[k], trained[k].to(torch.bfloat16)) for k in trained), "the step moved nothing"
    assert load_checkpoint_state(fresh, GRPOTrainer(fresh)) == 1
    copy = dict(fresh.engine.model.named_parameters())
    for name, value in trained.items():
        assert torch.equal(copy[name], value.to(torch.bfloat16)), name
