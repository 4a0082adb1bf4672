"""Plans and waiting helpers of the Slurm tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cascadec_runtime_plans import console, sft_stage

from cascadec.contract.plan import (
    DataSource, DistillParams, Domain, EvalSpec, Optim, Resources, RewardSpec, Schedule, Stage, TeacherRef,
)
from cascadec.render import render_plan
from runtime.slurm import slurmcli
from runtime.slurm.submit import submit
from runtime.state import RunDir

CPU = Resources(device="cpu")
FIXTURES = Path(__file__).parents[1] / "runtime" / "fixtures"


def toy_environment(cluster) -> dict[str, str]:
    """What the jobs need: the cluster's config and the toy plugin of tests/runtime (one thread each)."""
    return {
        "SLURM_CONF": str(cluster.conf),
        "PYTHONPATH": os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]),
        "CASCADEC_PLUGINS": "cascadec_toy_plugin",
        "OMP_NUM_THREADS": "1",
    }


def cpu_sft(name: str, parent: str, **kw) -> Stage:
    return sft_stage(name, parent, resources=CPU, **kw)


def spread_domain() -> Domain:
    """A domain whose eval score moves with the weights (avg@2 of the toy plugin's spread reward)."""
    rows = [{"prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(8)]
    return Domain(
        name="add", train=DataSource(kind="inline", rows=rows),
        reward=RewardSpec(kind="py", args={"fn": "cascadec_toy_plugin:spread_reward"}),
        evals=[EvalSpec(name="held", data=DataSource(kind="inline", rows=rows), metric="avg@k", k=2,
                        temperature=1.0, max_tokens=6)],
    )


def best_distill(name: str, parent: str, candidates: list[str]) -> Stage:
    return Stage(
        name=name, kind="distill", parent=parent, domains={"add": 1.0}, resources=CPU,
        params=DistillParams(optim=Optim(lr=Schedule(peak=1e-3)), steps=1, prompts_per_step=2,
                             rollouts_per_prompt=2, micro_batch=2, max_response=4),
        teachers={"default": TeacherRef(kind="best", candidates=candidates, domain="add", eval="held")},
    )


def build(tmp: Path, plan) -> Path:
    return render_plan(plan, tmp / "build")


def submit_ok(build_dir: Path, rd: RunDir, **kw) -> tuple[int, str]:
    out = console()
    rc = submit(build_dir, rd.root, console=out, **kw)
    return rc, out.file.getvalue()


def wait_jobs(rd: RunDir, timeout: float = 900) -> None:
    jobs = list(slurmcli.read_jobs(rd).values())
    deadline = time.monotonic() + timeout
    while slurmcli.active(jobs):
        if time.monotonic() > deadline:
            pytest.fail(f"jobs {jobs} still queued after {timeout} s:\n" + job_outputs(rd))
        time.sleep(1)


def job_outputs(rd: RunDir) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted((rd.root / "slurm").glob("*.out")))
