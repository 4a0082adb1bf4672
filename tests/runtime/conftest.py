"""Shared helpers of the runtime infrastructure tests: tiny plans and the toy-plugin environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cascadec.plan import (
    DataSource, Domain, EvalSpec, ModelRef, Optim, Plan, RewardSpec, Schedule, SFTParams, Stage,
)

FIXTURES = Path(__file__).parent / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

TINY = ModelRef(kind="tiny", name="llama", config={
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 2, "num_key_value_heads": 1,
})


SCHEDULE = Schedule(peak=1e-3, end=1e-4, kind="cosine", warmup=2, warmup_start=1e-4)


def rows(n: int, offset: int = 0) -> list[dict]:
    return [{"prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(offset, offset + n)]


def domain(name: str, *, reward: RewardSpec | None = None, train: DataSource | None = None,
           eval_rows: int = 3) -> Domain:
    return Domain(
        name=name,
        train=train or DataSource(kind="inline", rows=rows(8)),
        reward=reward or RewardSpec(kind="exact"),
        evals=[EvalSpec(name="held", data=DataSource(kind="inline", rows=rows(eval_rows, 50)), max_tokens=3)],
    )


def sft_stage(name: str, parent: str, *, steps: int = 3, domains: dict | None = None, save_every: int = 1,
              eval_every: int = 0, seed: int = 0, batch_size: int = 2, **extra) -> Stage:
    return Stage(
        name=name, kind="sft", parent=parent, domains=domains or {"add": 1.0},
        params=SFTParams(optim=Optim(lr=SCHEDULE), steps=steps, batch_size=batch_size),
        save_every=save_every, eval_every=eval_every, seed=seed, **extra,
    )


def tiny_plan(stages: list[Stage] | None = None, domains: dict[str, Domain] | None = None, **kw) -> Plan:
    return Plan(
        name="tiny",
        base=kw.pop("base", TINY),
        domains=domains or {"add": domain("add")},
        stages=stages or [sft_stage("s1", "base", steps=4), sft_stage("s2", "s1", steps=3)],
        **kw,
    )


def write_build(tmp_path: Path, plan: Plan) -> Path:
    build = tmp_path / "build"
    build.mkdir(exist_ok=True)
    (build / "plan.json").write_text(plan.to_json())
    return build


@pytest.fixture
def toy_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Child stage processes load the toy plugin and use a private model cache."""
    import os

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("CASCADEC_PLUGINS", "cascadec_toy_plugin")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
