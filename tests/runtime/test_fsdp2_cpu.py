"""FSDP2 (torch ``fully_shard`` through accelerate) on two CPU ranks (gloo): one GRPO step, its ``final/``
checkpoint, then one MOPD step from that checkpoint against the base model as teacher, compared with the same
steps under DDP. Same seeds give the same rollouts, so sharding must not change the update: a wrong gradient
of the tied head/embedding, a stale gathered weight, or a checkpoint saved from one shard shows up as a
difference from DDP."""

import os
import time
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

from dist_helpers import free_port, join_as_rank, letters_reward

TINY = ModelRef(kind="tiny", name="llama", config={"hidden_size": 32, "intermediate_size": 64,
                                                    "num_hidden_layers": 2, "num_attention_heads": 2,
                                                    "num_key_value_heads": 1})


def make_plan(strategy: str) -> Plan:
    common = {"optim": Optim(lr=Schedule(peak=1e-2)), "steps": 1, "prompts_per_step": 4, "rollouts_per_prompt": 2,
              "micro_batch": 2, "max_response": 6}
    resources = Resources(device="cpu", precision="fp32", strategy=strategy, nproc_per_node=2)
    dom = Domain(name="toy", train=DataSource(kind="inline", rows=[{"prompt": "x"}]), reward=RewardSpec(kind="exact"))
    stages = [
        Stage(name="rl", kind="grpo", parent="base", domains={"toy": 1.0}, params=GRPOParams(**common),
              resources=resources),
        Stage(name="mopd", kind="distill", parent="rl", domains={"toy": 1.0}, params=DistillParams(**common),
              resources=resources, teachers={"default": TeacherRef(kind="stage", stage="base")}),
    ]
    return Plan(name="f", base=TINY, domains={"toy": dom}, stages=stages)


def _save_late(acc) -> None:
    """Make this rank's ``save_state`` start a second late: rank 0 must wait for its files before it renames
    the checkpoint folder into place (it once did not, and rank 1's files landed in a vanished folder)."""
    original = acc.save_state

    def late(*args, **kwargs):
        time.sleep(1.0)
        return original(*args, **kwargs)

    acc.save_state = late


def _worker(rank: int, port: int, tmp: str, strategy: str) -> None:
    join_as_rank(rank, port)
    from cascadec.render import accelerate_env
    from runtime.data import Sample
    from runtime.entry import build_context
    from runtime.loop import load_checkpoint_state, save_checkpoint, save_final
    from runtime.models import load_checkpoint
    from runtime.stages.distill import DistillTrainer
    from runtime.stages.grpo import GRPOTrainer
    from runtime.state import RunDir

    plan = make_plan(strategy)
    os.environ.update(dict(accelerate_env(plan.stages[0])))  # what the rendered launch.sh exports
    rd = RunDir(Path(tmp) / strategy)
    batch = [Sample(id=f"toy/train/{rank}{i}", domain="toy", prompt=f"p{rank}{i}") for i in range(2)]
    out = {}
    for stage, trainer_cls in (("rl", GRPOTrainer), ("mopd", DistillTrainer)):
        ctx = build_context(plan, plan.stage(stage), rd)
        ctx.rewards["toy"] = letters_reward
        if strategy == "fsdp2":
            from torch.distributed.fsdp import FSDPModule

            assert ctx.accelerator.is_fsdp2, (stage, ctx.accelerator.distributed_type)
            assert isinstance(ctx.policy, FSDPModule), (stage, type(ctx.policy))
        trainer = trainer_cls(ctx)
        metrics = trainer.step(0, batch)
        final = save_final(ctx)
        out[stage] = {"loss": metrics["loss"]}
        if stage == "rl":
            # The resumable checkpoint: saved from the shards, restored into a fresh sharded context.
            if rank == 1:
                _save_late(ctx.accelerator)
            save_checkpoint(ctx, trainer, 1)
            out["rank1_rng_saved"] = (rd.ckpt(stage) / "accelerate" / "random_states_1.pkl").is_file()
            trained = ctx.accelerator.get_state_dict(ctx.policy)
            fresh = build_context(plan, plan.stage(stage), rd)
            out["resumed_step"] = load_checkpoint_state(fresh, trainer_cls(fresh))
            restored = fresh.accelerator.get_state_dict(fresh.policy)
            if rank == 0:
                out["resume_max_diff"] = max(float((trained[k] - restored[k]).abs().max()) for k in trained)
        if rank == 0:
            model, _ = load_checkpoint(final)
            out[stage]["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(out, Path(tmp) / f"{strategy}{rank}.pt")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fsdp2_steps_match_ddp(tmp_path):
    for strategy in ("ddp", "fsdp2"):
        mp.spawn(_worker, args=(free_port(), str(tmp_path), strategy), nprocs=2, join=True)
    from runtime.models import load_model

    initial = load_model(TINY, seed=0)[0].state_dict()
    ddp, fsdp = torch.load(tmp_path / "ddp0.pt"), torch.load(tmp_path / "fsdp20.pt")
    assert fsdp["resumed_step"] == 1 and fsdp["resume_max_diff"] == 0.0
    assert ddp["rank1_rng_saved"] and fsdp["rank1_rng_saved"], "the checkpoint lost rank 1's files"
    for stage in ("rl", "mopd"):
        assert torch.isfinite(torch.tensor(fsdp[stage]["loss"]))
        assert ddp[stage]["weights"].keys() == fsdp[stage]["weights"].keys()
        for name, ref in ddp[stage]["weights"].items():
            torch.testing.assert_close(fsdp[stage]["weights"][name], ref, atol=1e-6, rtol=1e-5, msg=name)
    # Both steps moved the weights, the tied embedding/head included.
    embed = "model.embed_tokens.weight"
    assert not torch.equal(fsdp["rl"]["weights"][embed], initial[embed])
    assert not torch.equal(fsdp["mopd"]["weights"][embed], fsdp["rl"]["weights"][embed])


def _generate_worker(rank: int, port: int, tmp: str) -> None:
    join_as_rank(rank, port)
    from cascadec.render import accelerate_env
    from runtime.entry import build_context
    from runtime.state import RunDir

    plan = make_plan("fsdp2")
    os.environ.update(dict(accelerate_env(plan.stages[0])))
    ctx = build_context(plan, plan.stage("rl"), RunDir(Path(tmp) / "run"))
    model = ctx.unwrapped_policy()
    # The ranks stop after different numbers of tokens, as ranks whose rollouts hit EOS at different times
    # do. Every forward all-gathers the layers, so a rank that left generate early would pair its next
    # collectives with the other rank's decode steps (a hang). transformers' generate keeps finished ranks
    # stepping (`synced_gpus`) when it sees an FSDP-managed module; the rollout engine relies on that.
    new = 3 if rank == 0 else 9
    ids = torch.tensor([[1, 5, 6, 7]])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                         min_new_tokens=new, do_sample=False)
    # A full-parameter collective after generate: it completes only if generate left the ranks aligned.
    checksum = sum(float((p.full_tensor() if hasattr(p, "full_tensor") else p).sum()) for p in model.parameters())
    torch.save({"new_tokens": out.shape[1] - ids.shape[1], "checksum": checksum}, Path(tmp) / f"gen{rank}.pt")


@pytest.mark.timeout(120)
def test_sharded_generate_keeps_ranks_in_step(tmp_path):
    mp.spawn(_generate_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"gen{r}.pt") for r in (0, 1))
    assert (r0["new_tokens"], r1["new_tokens"]) == (3, 9)
    assert r0["checksum"] == r1["checksum"]
