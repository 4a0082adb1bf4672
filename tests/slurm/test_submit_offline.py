"""The Slurm launcher's parts that need no cluster: the jobs and dependencies of a dry run, option checks,
shared-filesystem warnings, and the CLI's refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cascadec_runtime_plans import console
from typer.testing import CliRunner

from cascadec import cli
from cascadec.contract.plan import (
    DataSource, DistillParams, Domain, ModelRef, Optim, Plan, RewardSpec, Schedule, SFTParams, Stage, TeacherRef,
)
from cascadec.render import render_plan
from runtime.orchestrator import RunError
from runtime.slurm.paths import node_local_reason
from runtime.slurm.submit import SlurmOptions, submit


def _plan() -> Plan:
    optim = Optim(lr=Schedule(peak=1e-5))
    dom = Domain(name="math", train=DataSource(kind="jsonl", path="data/math.jsonl"), reward=RewardSpec(kind="exact"))
    sft = dict(kind="sft", domains={"math": 1.0}, params=SFTParams(optim=optim, steps=4))
    return Plan(name="demo", base=ModelRef(kind="packaged", name="smollm2-135m-instruct"), domains={"math": dom},
                stages=[
                    Stage(name="sft", parent="base", **sft),
                    Stage(name="side", parent="sft", branch=True, **sft),
                    Stage(name="rl", parent="sft", **sft),
                    Stage(name="mopd", kind="distill", parent="rl", domains={"math": 1.0},
                          params=DistillParams(optim=optim, steps=2),
                          teachers={"math": TeacherRef(kind="best", candidates=["side", "rl"], domain="math",
                                                       eval="gsm")}),
                ])


def _dry_run(tmp_path: Path, options: SlurmOptions) -> dict[str, str]:
    build = render_plan(_plan(), tmp_path / "build")
    out = console()
    assert submit(build, tmp_path / "run", options=options, dry_run=True, console=out) == 0
    text = out.file.getvalue()
    assert not (tmp_path / "run").exists(), "a dry run writes nothing"
    return {m.group(2): m.group(0) for m in re.finditer(r"job (\d+) \((\w+), \w+\): sbatch .*", text)}


def test_dry_run_lists_every_job_with_its_dependencies_and_options(tmp_path: Path) -> None:
    jobs = _dry_run(tmp_path, SlurmOptions(partition="gpu", time="1:00:00", qos="high", account="proj",
                                           extra=("--mem=1G",)))
    assert list(jobs) == ["base", "sft", "side", "rl", "mopd"]
    # base=1 sft=2 side=3 rl=4: each stage after its parent, teachers (both best() candidates) and the base
    # evals; afterany on the previous job keeps one run directory's stages one at a time.
    assert "--dependency" not in jobs["base"]
    assert "--dependency=afterok:1 " in jobs["sft"]
    assert "--dependency=afterok:1:2 " in jobs["side"]
    assert "--dependency=afterok:1:2,afterany:3 " in jobs["rl"]
    assert "--dependency=afterok:1:3:4 " in jobs["mopd"]
    for name, line in jobs.items():
        for option in ("--partition=gpu", "--time=1:00:00", "--qos=high", "--account=proj", "--mem=1G",
                       "--kill-on-invalid-dep=yes"):
            assert f" {option} " in line, (name, line)
    assert re.search(r"build/demo/stages/mopd/sbatch\.sh --run-dir=\S+/run$", jobs["mopd"])


def test_a_bare_word_is_not_an_sbatch_option() -> None:
    with pytest.raises(RunError, match="`--sbatch mem=1G` is not an sbatch option"):
        SlurmOptions(extra=("mem=1G",)).sbatch_args()


def test_the_stage_script_requeues_and_signals_before_the_time_limit(tmp_path: Path) -> None:
    script = (render_plan(_plan(), tmp_path / "build") / "stages" / "rl" / "sbatch.sh").read_text()
    assert "#SBATCH --requeue\n" in script and "#SBATCH --signal=TERM@300\n" in script
    assert "-m runtime.slurm.job" in script


@pytest.mark.parametrize(("path", "mounts", "local"), [
    ("/scratch/me/runs", "nfs:/x /scratch nfs rw 0 0\n", False),
    ("/scratch/me/runs", "tmpfs /scratch tmpfs rw 0 0\n", True),
    ("/tmp/runs", "/dev/sda / ext4 rw 0 0\n", True),
    ("/home/me/runs", "/dev/sda / ext4 rw 0 0\ntmpfs /home/other tmpfs rw 0 0\n", False),
])
def test_node_local_paths_are_recognised(path: str, mounts: str, local: bool) -> None:
    assert (node_local_reason(Path(path), mounts) is not None) == local


def _cli(*args: str):
    return CliRunner().invoke(cli.app, list(args), catch_exceptions=False)


def test_slurm_options_without_the_slurm_launcher_are_refused(tmp_path: Path) -> None:
    result = _cli("run", str(tmp_path), "--time", "1:00:00", "--sbatch=--mem=1G")
    assert result.exit_code == 2
    assert "--time, --sbatch apply only to `--launcher slurm`" in result.stderr


def test_nproc_with_the_slurm_launcher_is_refused(tmp_path: Path) -> None:
    result = _cli("run", str(tmp_path), "--launcher", "slurm", "--nproc", "2")
    assert result.exit_code == 2 and "`--nproc` applies to local runs" in result.stderr


def test_cancel_without_jobs_says_so(tmp_path: Path) -> None:
    result = _cli("cancel", str(tmp_path))
    assert result.exit_code == 0 and result.stdout == "no queued or running jobs\n"
