"""The fast rollout engine under FSDP2 on two CPU ranks (gloo), against the same engine under DDP and against
transformers' greedy ``generate`` of the whole model.

Under FSDP2 the engine decodes from its own whole copy, gathered parameter by parameter from the ``DTensor``
shards at bind time and by ``sync_weights`` after each optimizer step; decoding itself has no collectives.
Same seeds give the same rollouts and the same update under both strategies (as in
``test_fsdp2_cpu.py``), so a stale, partial or mis-named gathered weight shows up as a different greedy
completion or a copy that differs from the trained weights. The ranks decode different numbers of tokens
before a collective, which hangs if decoding joins any collective.
"""

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from cascadec.contract.plan import (
    DataSource,
    Domain,
    GRPOParams,
    ModelRef,
    Optim,
    Plan,
    Resources,
    RewardSpec,
    Schedule,
    Stage,
)

from dist_helpers import free_port, join_as_rank, letters_reward

TINY = ModelRef(kind="tiny", name="llama", config={"hidden_size": 32, "intermediate_size": 64,
                                                    "num_hidden_layers": 2, "num_attention_heads": 2,
                                                    "num_key_value_heads": 1, "initializer_range": 0.3})
PROMPTS = ["p0 p1", "p2", "p3 p4 p5"]
GREEDY = {"n": 1, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "seed": 0}
LONG = 12


def make_plan(strategy: str) -> Plan:
    params = GRPOParams(optim=Optim(lr=Schedule(peak=1e-2)), steps=1, prompts_per_step=4, rollouts_per_prompt=2,
                        micro_batch=2, max_response=6)
    resources = Resources(device="cpu", precision="fp32", strategy=strategy, nproc_per_node=2)
    dom = Domain(name="toy", train=DataSource(kind="inline", rows=[{"prompt": "x"}]), reward=RewardSpec(kind="exact"))
    stage = Stage(name="rl", kind="grpo", parent="base", domains={"toy": 1.0}, params=params, resources=resources)
    return Plan(name="f", base=TINY, domains={"toy": dom}, stages=[stage])


def _holds_dtensor(module: torch.nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(t, DTensor) for t in [*module.parameters(), *module.buffers()])


def _full(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
            for name, p in model.named_parameters()}


def _worker(rank: int, port: int, tmp: str, strategy: str) -> None:
    join_as_rank(rank, port)
    from cascadec.render import accelerate_env
    from runtime.data import Sample
    from runtime.entry import build_context
    from runtime.logprobs import unwrap_model
    from runtime.rollout import select_engine
    from runtime.rollout.fast import FastRolloutEngine
    from runtime.rollout.hf import HFRolloutEngine
    from runtime.stages.grpo import GRPOTrainer
    from runtime.state import RunDir

    plan = make_plan(strategy)
    os.environ.update(dict(accelerate_env(plan.stages[0])))  # what the rendered launch.sh exports
    ctx = build_context(plan, plan.stage("rl"), RunDir(Path(tmp) / strategy))
    ctx.rewards["toy"] = letters_reward
    out: dict = {"selected": select_engine(dataclasses.replace(ctx, device=torch.device("cuda")))}
    engine = FastRolloutEngine(ctx.policy, ctx.tokenizer, dtype=ctx.dtype)
    out["copied"] = engine.model is not unwrap_model(ctx.policy)
    out["copy_class"] = type(engine.model).__name__
    out["holds_dtensor"] = _holds_dtensor(engine.model)
    # Different lengths per rank, then a collective (the gather below): decoding must join none.
    out["before"] = engine.generate(PROMPTS, max_new_tokens=4 if rank == 0 else LONG, **GREEDY).completion_ids
    out["before_long"] = engine.generate(PROMPTS, max_new_tokens=LONG, **GREEDY)
    if strategy == "ddp":
        reference = HFRolloutEngine(ctx.policy, ctx.tokenizer).generate(PROMPTS, max_new_tokens=LONG, **GREEDY)
        out["hf"] = reference.completion_ids
    initial = _full(unwrap_model(ctx.policy))
    ctx.engine = engine  # the step's rollouts come from the fast engine, and the step calls sync_weights
    batch = [Sample(id=f"toy/train/{rank}{i}", domain="toy", prompt=f"p{rank}{i}") for i in range(2)]
    out["loss"] = GRPOTrainer(ctx).step(0, batch)["loss"]
    trained = _full(unwrap_model(ctx.policy))
    replica = dict(engine.model.named_parameters())
    out["moved"] = max(float((trained[k] - initial[k]).abs().max()) for k in trained)
    out["copy_vs_trained"] = max(float((replica[k] - trained[k]).abs().max()) for k in trained)
    out["after"] = engine.generate(PROMPTS, max_new_tokens=LONG, **GREEDY).completion_ids
    out["holds_dtensor"] |= _holds_dtensor(engine.model)
    torch.save(out, Path(tmp) / f"{strategy}{rank}.pt")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fast_engine_under_fsdp2_matches_ddp(tmp_path):
    for strategy in ("ddp", "fsdp2"):
        mp.spawn(_worker, args=(free_port(), str(tmp_path), strategy), nprocs=2, join=True)
    for rank in (0, 1):
        ddp, fsdp = (torch.load(tmp_path / f"{s}{rank}.pt", weights_only=False) for s in ("ddp", "fsdp2"))
        assert ddp["selected"] == fsdp["selected"] == "fast"
        assert fsdp["copied"] and not fsdp["holds_dtensor"] and fsdp["copy_class"] == "LlamaForCausalLM"
        assert fsdp["before"] == ddp["before"]
        assert fsdp["before_long"].completion_ids == ddp["before_long"].completion_ids == ddp["hf"]
        for mine, theirs in zip(fsdp["before_long"].completion_logprobs, ddp["before_long"].completion_logprobs):
            torch.testing.assert_close(torch.tensor(mine), torch.tensor(theirs), atol=1e-5, rtol=1e-5)
        # The step changed the weights, the copy followed them exactly, and both strategies agree after it.
        assert fsdp["moved"] > 1e-4 and fsdp["copy_vs_trained"] == 0.0
        torch.testing.assert_close(fsdp["loss"], ddp["loss"], atol=1e-6, rtol=1e-5)
        assert fsdp["after"] == ddp["after"] != ddp["before_long"].completion_ids


def test_decode_copy_keeps_ties_and_rotary_buffers():
    from runtime.models import load_model
    from runtime.rollout.fast import FastRolloutEngine

    model, tokenizer = load_model(TINY)
    engine = FastRolloutEngine(model, tokenizer, dtype=torch.bfloat16)
    replica = engine.model
    assert replica is not model and type(replica) is type(model)
    assert replica.lm_head.weight is replica.model.embed_tokens.weight
    source = dict(model.named_parameters())
    for name, param in replica.named_parameters():
        assert param.dtype == torch.bfloat16 and not param.requires_grad, name
        assert torch.equal(param, source[name].to(torch.bfloat16)), name
    # Rotary inverse frequencies stay in the source's fp32: rounded to bf16 they would shift every position.
    buffers = dict(model.named_buffers())
    assert buffers, "the tiny model has no buffers to check"
    for name, buffer in replica.named_buffers():
        assert buffer.dtype == buffers[name].dtype and torch.equal(buffer, buffers[name]), name
