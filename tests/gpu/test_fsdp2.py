"""FSDP2 on 1 and 2 GPUs in bf16: one GRPO step, its ``final/`` and resumable checkpoints, then one MOPD step
from that ``final/`` with the base model as teacher, through ``runtime.entry.build_context`` (accelerate's
FSDP2 plugin, NCCL) and the real trainers.

Checks: the policy is sharded (``FSDPModule``), the rollouts come from the fast engine (its whole bf16 copy,
no ``DTensor`` in it, equal to the gathered weights after each step's ``sync_weights``), losses are finite,
each step moves the weights (the tied embedding/head included), every rank ends with the same full weights, a
checkpoint restores exactly into a fresh sharded context, and a ``final/`` loads as a Hugging Face checkpoint.
Marked ``gpu``; skips without enough CUDA devices. The CPU tests ``tests/runtime/test_fsdp2_cpu.py`` and
``tests/runtime/test_fast_fsdp2.py`` compare the same steps and the fast engine's rollouts with DDP.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from cascadec.contract.plan import (
    DataSource,
    DistillParams,
    Domain,
    GRPOParams,
    ModelRef,
    Optim,
    Plan,
    Resources,
    RewardSpec,
    Schedule,
    Stage,
    TeacherRef,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

TINY = ModelRef(kind="tiny", name="qwen2", config={"hidden_size": 256, "intermediate_size": 512,
                                                    "num_hidden_layers": 4, "num_attention_heads": 4,
                                                    "num_key_value_heads": 2, "tie_word_embeddings": True,
                                                    "max_position_embeddings": 512})
EMBED = "model.embed_tokens.weight"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_plan(world: int) -> Plan:
    common = {"optim": Optim(lr=Schedule(peak=1e-3)), "steps": 1, "prompts_per_step": 8, "rollouts_per_prompt": 4,
              "micro_batch": 8, "max_response": 32}
    resources = Resources(device="cuda", precision="bf16", strategy="fsdp2", nproc_per_node=world)
    dom = Domain(name="toy", train=DataSource(kind="inline", rows=[{"prompt": "x"}]),
                 reward=RewardSpec(kind="py", args={"fn": "bench.gpu_common:length_reward"}))
    stages = [
        Stage(name="rl", kind="grpo", parent="base", domains={"toy": 1.0}, params=GRPOParams(**common),
              resources=resources),
        Stage(name="mopd", kind="distill", parent="rl", domains={"toy": 1.0}, params=DistillParams(**common),
              resources=resources, teachers={"default": TeacherRef(kind="stage", stage="base")}),
    ]
    return Plan(name="fsdp2-gpu", base=TINY, domains={"toy": dom}, stages=stages)


def _full_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter gathered whole on this rank (DTensor shards -> full tensors), fp32 on the CPU."""
    out = {}
    for name, p in model.named_parameters():
        full = p.full_tensor() if hasattr(p, "full_tensor") else p
        out[name] = full.detach().float().cpu().clone()
    return out


def _engine_copy(engine, after: dict[str, torch.Tensor]) -> dict:
    """What the stage's rollout engine is, whether it holds a ``DTensor``, and how far its copy of each
    parameter is from the gathered weights ``after`` rounded to the copy's dtype (0 after a sync)."""
    from torch.distributed.tensor import DTensor

    from runtime.rollout.fast import FastRolloutEngine

    if not isinstance(engine, FastRolloutEngine):
        return {"engine": type(engine).__name__}
    replica = dict(engine.model.named_parameters())
    tensors = [*engine.model.parameters(), *engine.model.buffers()]
    return {"engine": type(engine).__name__,
            "holds_dtensor": any(isinstance(t, DTensor) for t in tensors),
            "copy_max_diff": max(float((replica[k].float().cpu() - v.to(replica[k].dtype).float()).abs().max())
                                 for k, v in after.items())}


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from torch.distributed.fsdp import FSDPModule

    from cascadec.render import accelerate_env
    from runtime.data import Sample
    from runtime.entry import build_context
    from runtime.loop import load_checkpoint_state, save_checkpoint, save_final
    from runtime.models import load_checkpoint
    from runtime.rollout import select_engine
    from runtime.stages.distill import DistillTrainer
    from runtime.stages.grpo import GRPOTrainer
    from runtime.state import RunDir

    plan = make_plan(world)
    os.environ.update(dict(accelerate_env(plan.stages[0])))  # what the rendered launch.sh exports
    rd = RunDir(Path(tmp) / "run")
    per_rank = plan.stages[0].params.prompts_per_step // world
    batch = [Sample(id=f"toy/train/{rank}-{i}", domain="toy", prompt=f"count to {rank * 10 + i}")
             for i in range(per_rank)]
    out: dict = {}
    for stage, trainer_cls in (("rl", GRPOTrainer), ("mopd", DistillTrainer)):
        ctx = build_context(plan, plan.stage(stage), rd)
        assert ctx.accelerator.is_fsdp2 and isinstance(ctx.policy, FSDPModule), type(ctx.policy)
        before = _full_params(ctx.policy)
        torch.cuda.reset_peak_memory_stats()
        trainer = trainer_cls(ctx)
        metrics = trainer.step(0, batch)
        after = _full_params(ctx.policy)
        final = save_final(ctx)
        out[stage] = {"loss": metrics["loss"], "moved": float((after[EMBED] - before[EMBED]).abs().max()),
                      "checksum": sum(float(v.double().sum()) for v in after.values()),
                      "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "selected": select_engine(ctx),
                      **_engine_copy(ctx.engine, after)}
        if stage == "rl":
            save_checkpoint(ctx, trainer, 1)
            fresh = build_context(plan, plan.stage(stage), rd)
            out["resumed_step"] = load_checkpoint_state(fresh, trainer_cls(fresh))
            restored = _full_params(fresh.policy)
            out["resume_max_diff"] = max(float((after[k] - restored[k]).abs().max()) for k in after)
        if rank == 0:
            model, _ = load_checkpoint(final)
            saved = model.state_dict()[EMBED].float()
            out[stage]["final_max_diff"] = float((saved - after[EMBED]).abs().max())
    torch.save(out, Path(tmp) / f"out{rank}.pt")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("world", [1, 2])
def test_fsdp2_grpo_and_mopd_steps(tmp_path, world):
    if torch.cuda.device_count() < world:
        pytest.skip(f"needs {world} CUDA devices, found {torch.cuda.device_count()}")
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    outs = [torch.load(tmp_path / f"out{r}.pt") for r in range(world)]
    for stage in ("rl", "mopd"):
        for out in outs:
            assert torch.isfinite(torch.tensor(out[stage]["loss"])), (stage, out[stage])
            assert out[stage]["moved"] > 0, stage
            # FSDP2 rollouts decode from a whole bf16 copy that each step's sync_weights re-gathers.
            assert out[stage]["selected"] == "fast" and out[stage]["engine"] == "FastRolloutEngine", out[stage]
            assert not out[stage]["holds_dtensor"] and out[stage]["copy_max_diff"] == 0.0, out[stage]
        assert len({out[stage]["checksum"] for out in outs}) == 1, [out[stage]["checksum"] for out in outs]
        # final/ holds the trained full weights (saved from the shards; fp32 master weights).
        assert outs[0][stage]["final_max_diff"] == 0.0, outs[0][stage]
        print(f"world {world} {stage}: loss {outs[0][stage]['loss']:.4g}, peak "
              f"{max(o[stage]['peak_gib'] for o in outs):.2f} GiB")
    for out in outs:
        assert out["resumed_step"] == 1 and out["resume_max_diff"] == 0.0
