"""A teacher from outside the cascade: loaded from its own directory, identity-checked, and part of the hashes."""

from __future__ import annotations

import pytest
import torch

from cascadec.contract.identity import directory_identity, identity_of
from cascadec.contract.plan import (DataSource, DistillParams, Domain, ModelRef, Optim, Plan, RewardSpec, Schedule, Stage,
                           TeacherRef)
from runtime.data import Sample
from runtime.entry import build_context
from runtime.external import load_external
from runtime.models import ModelLoadError, load_model, save_checkpoint
from runtime.orchestrator import stage_hashes
from runtime.stages.distill import DistillTrainer
from runtime.state import RunDir

TINY = ModelRef(kind="tiny", name="llama", config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                                    "num_attention_heads": 2, "num_key_value_heads": 1})


def _plan(ext: ModelRef) -> Plan:
    dom = Domain(name="a", train=DataSource(kind="inline", rows=[{"prompt": "x"}]), reward=RewardSpec(kind="exact"))
    params = DistillParams(optim=Optim(lr=Schedule(peak=1e-3)), steps=1, prompts_per_step=2, rollouts_per_prompt=2,
                           micro_batch=4, max_response=3)
    stage = Stage(name="mopd", kind="distill", parent="base", domains={"a": 1.0}, params=params,
                  teachers={"default": TeacherRef(kind="stage", stage="ext")})
    return Plan(name="x", base=TINY, domains={"a": dom}, stages=[stage], checkpoints={"ext": ext})


@pytest.fixture
def teacher_dir(tmp_path):
    torch.manual_seed(1)
    model, tok = load_model(TINY, seed=7)  # other weights than the student's (seed 0)
    save_checkpoint(model, tok, tmp_path / "teacher")
    return tmp_path / "teacher"


def test_external_teacher_is_loaded_and_scores_rows(teacher_dir, tmp_path):
    ext = ModelRef(kind="path", name=str(teacher_dir), identity=directory_identity(str(teacher_dir)))
    plan = _plan(ext)
    ctx = build_context(plan, plan.stage("mopd"), RunDir(tmp_path / "run"))
    trainer = DistillTrainer(ctx)
    loaded = trainer.pool.models["ext"]
    expected, _ = load_external("ext", ext, dtype=ctx.dtype)  # the teacher is loaded in the stage's dtype
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), expected.state_dict().values()))
    student = ctx.unwrapped_policy().state_dict()
    assert any(not torch.equal(a, student[k]) for k, a in loaded.state_dict().items())
    m = trainer.step(0, [Sample(id="a/0", domain="a", prompt="hi"), Sample(id="a/1", domain="a", prompt="yo")])
    assert m["teacher_rows/ext"] == 4 and m["loss"] == m["loss"]


def test_a_changed_teacher_is_refused_and_changes_the_hash(teacher_dir, tmp_path):
    ext = ModelRef(kind="path", name=str(teacher_dir), identity=identity_of("path", str(teacher_dir)))
    before = stage_hashes(_plan(ext))["mopd"]
    (teacher_dir / "config.json").write_text((teacher_dir / "config.json").read_text().replace("32", "33", 1))
    with pytest.raises(ModelLoadError, match="changed since the plan was compiled"):
        load_external("ext", ext)
    changed = ext.model_copy(update={"identity": identity_of("path", str(teacher_dir))})
    assert changed.identity != ext.identity and stage_hashes(_plan(changed))["mopd"] != before


def test_a_stage_of_another_run(teacher_dir, tmp_path):
    other = RunDir(tmp_path / "other")
    model, tok = load_model(TINY, seed=3)
    save_checkpoint(model, tok, other.final("sft"))
    ref = ModelRef(kind="run", name=str(other.root), stage="sft")
    with pytest.raises(ModelLoadError, match="has not finished"):
        load_external("prev", ref)
    other.update_stage("sft", status="done", step=1)
    loaded, _ = load_external("prev", ref.model_copy(update={"identity": identity_of("run", str(other.root), "sft")}))
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())
