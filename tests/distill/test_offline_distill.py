"""The `offline_distill` stage: a CPU run on tiny models lowers the KL to its teacher; the teacher cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_distill_trainer import TINY, _samples, _sft

from cascadec.contract.params import OfflineDistillParams, SFTParams
from cascadec.contract.plan import DataSource, Domain, Optim, Plan, RewardSpec, Schedule, Stage, TeacherRef
from runtime.entry import build_context
from runtime.models import save_checkpoint
from runtime.stages import TRAINERS
from runtime.stages.offline_distill import OfflineDistillTrainer
from runtime.state import RunDir

torch.set_num_threads(2)


def _plan(**params) -> Plan:
    dom = Domain(name="a", train=DataSource(kind="inline", rows=[{"prompt": "x"}]), reward=RewardSpec(kind="exact"))
    args = {"optim": Optim(lr=Schedule(peak=1e-2)), "steps": 12, "batch_size": 8, "micro_batch": 4,
            "max_response": 3, "kd_weight": 0.5, "kd_top_k": 8}
    stages = [Stage(name="teach", kind="sft", parent="base", domains={"a": 1.0},
                    params=SFTParams(optim=Optim(lr=Schedule(peak=1e-2)), steps=1), branch=True),
              Stage(name="od", kind="offline_distill", parent="base", domains={"a": 1.0},
                    params=OfflineDistillParams(**{**args, **params}),
                    teachers={"default": TeacherRef(kind="stage", stage="teach")})]
    return Plan(name="o", base=TINY, domains={"a": dom}, stages=stages)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> Path:
    """A run directory whose finished `teach` stage answers `y` to every prompt."""
    root = tmp_path_factory.mktemp("run")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, tok = _sft(_plan(), ["y"])
    rd = RunDir(root)
    save_checkpoint(model, tok, rd.final("teach"))
    rd.update_stage("teach", status="done", step=1)
    return root


def _ctx(root: Path, tmp: Path, **params):
    run = tmp / "run"
    (run / "stages" / "teach").mkdir(parents=True)
    (run / "stages" / "teach" / "final").symlink_to(root / "stages" / "teach" / "final")
    (run / "state.json").write_text((root / "state.json").read_text())
    plan = _plan(**params)
    return build_context(plan, plan.stage("od"), RunDir(run))


@torch.no_grad()
def _kl_to_teacher(trainer: OfflineDistillTrainer, samples) -> float:
    """Mean over target tokens of KL(teacher || student), full vocabulary, on the teacher's own generations."""
    trainer._targets(samples)
    ctx = trainer.ctx
    total, count = 0.0, 0
    with trainer.pool.on_device("teach") as teacher:
        for s in samples:
            e = trainer.cache.entries[s.id]
            ids = torch.tensor([e["prompt"] + e["completion"]])
            span = slice(len(e["prompt"]) - 1, ids.shape[1] - 1)
            t = teacher(input_ids=ids).logits[0, span].log_softmax(-1)
            st = ctx.policy(input_ids=ids).logits[0, span].log_softmax(-1)
            total += float((t.exp() * (t - st)).sum())
            count += span.stop - span.start
    return total / count


def test_registered():
    assert TRAINERS["offline_distill"] is OfflineDistillTrainer


@pytest.mark.parametrize("kd_weight", [0.0, 0.5])
def test_offline_distillation_lowers_the_kl_to_its_teacher(teacher_run, tmp_path, kd_weight):
    ctx = _ctx(teacher_run, tmp_path, kd_weight=kd_weight)
    trainer = OfflineDistillTrainer(ctx)
    held_out = _samples("a", 8, offset=100)
    before = _kl_to_teacher(trainer, held_out)
    for step in range(12):
        m = trainer.step(step, _samples("a", 8, offset=8 * step))
    after = _kl_to_teacher(trainer, held_out)
    assert m["grad_norm"] > 0 and (m["kd"] > 0) == (kd_weight > 0)
    assert after < 0.5 * before, (before, after)


def test_teacher_work_is_cached_once_and_reused(teacher_run, tmp_path):
    ctx = _ctx(teacher_run, tmp_path, steps=2)
    trainer = OfflineDistillTrainer(ctx)
    batch = _samples("a", 4)
    assert trainer.step(0, batch)["cached"] == 0.0
    assert trainer.step(1, batch)["cached"] == 4.0
    entry = trainer.cache.entries[batch[0].id]
    assert entry["ids"].shape == (len(entry["completion"]), 8)  # k = 8 teacher tokens per target token
    again = OfflineDistillTrainer(_ctx_same_run(ctx))
    assert set(again.cache.entries) == {s.id for s in batch}  # read back from stages/od/teacher_cache/


def _ctx_same_run(ctx):
    return build_context(ctx.plan, ctx.stage, RunDir(ctx.run_dir))
