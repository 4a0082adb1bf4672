"""The cascade on a real one-node Slurm cluster: submitted, chained, requeued, failed and resumed.

Every job runs a build's rendered ``sbatch.sh`` (or, for the base evals, ``runtime.slurm.job``) on the
cluster of ``conftest.py``; the stages are tiny random-init models trained by the toy plugin of the runtime
tests, so each job is seconds of work.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from cascadec_runtime_plans import console, run_ok, tiny_plan
from slurm_helpers import (
    best_distill, build, cpu_sft, job_outputs, spread_domain, submit_ok, toy_environment, wait_jobs,
)

from runtime.status import status
from runtime.slurm import slurmcli
from runtime.state import RunDir, read_jsonl

pytestmark = pytest.mark.slow


def _cascade():
    # s1 -> s2 -> d, and d's teacher is best(s1, s2 by add.held): chosen from the scores the two jobs before it
    # recorded.
    return tiny_plan(domains={"add": spread_domain()}, stages=[
        cpu_sft("s1", "base", steps=2), cpu_sft("s2", "s1", steps=2, seed=1), best_distill("d", "s2", ["s1", "s2"]),
    ])


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The three-stage cascade, once through Slurm and once locally."""
    tmp = tmp_path_factory.mktemp("cascade")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in toy_environment(cluster).items():
            mp.setenv(key, value)
        build_dir = build(tmp, _cascade())
        slurm_rd, local_rd = RunDir(tmp / "slurm-run"), RunDir(tmp / "local-run")
        rc, out = submit_ok(build_dir, slurm_rd, wait=True)
        assert rc == 0, out + job_outputs(slurm_rd)
        run_ok(build_dir, local_rd)
    return build_dir, slurm_rd, local_rd, out


def _scores(rd: RunDir) -> list[tuple]:
    return [(r["stage"], r["step"], r["domain"], r["eval"], r["score"]) for r in read_jsonl(rd.evals_jsonl)]


def _losses(rd: RunDir, stage: str) -> list[float]:
    return [r["loss"] for r in read_jsonl(rd.metrics(stage))]


def test_three_stage_cascade_through_slurm_matches_the_local_run(runs) -> None:
    _, slurm_rd, local_rd, out = runs
    assert set(slurmcli.read_jobs(slurm_rd)) == {"base", "s1", "s2", "d"}
    states = slurm_rd.read_state()["stages"]
    assert {s: states[s]["status"] for s in ("s1", "s2", "d")} == {"s1": "done", "s2": "done", "d": "done"}
    assert _scores(slurm_rd) == pytest.approx(_scores(local_rd))
    for stage in ("s1", "s2", "d"):
        assert _losses(slurm_rd, stage) == pytest.approx(_losses(local_rd, stage), rel=1e-5)
    assert "eval scores after each stage" in out


def test_best_teacher_is_resolved_between_jobs(runs) -> None:
    _, slurm_rd, local_rd, _ = runs
    final = {r["stage"]: r["score"] for r in read_jsonl(slurm_rd.evals_jsonl) if r["stage"] in ("s1", "s2")}
    assert final["s1"] != final["s2"], "the eval must tell the candidates apart for this test to mean anything"
    chosen = json.loads((slurm_rd.stage_dir("d") / "teachers.json").read_text())
    assert chosen == json.loads((local_rd.stage_dir("d") / "teachers.json").read_text())
    assert max(("s1", "s2"), key=lambda s: final[s]) in json.dumps(chosen)


def test_jobs_run_the_rendered_sbatch_scripts(runs, slurm) -> None:
    build_dir, slurm_rd, _, _ = runs
    jobs = slurmcli.read_jobs(slurm_rd)
    for stage in ("s1", "s2", "d"):
        record = slurm.run("scontrol", "-o", "show", "job", jobs[stage])
        assert f"Command={build_dir / 'stages' / stage / 'sbatch.sh'} " in record
        assert "Requeue=1" in record
        log = slurm_rd.log(stage).read_text()
        step = f"--- srun --nodes=1 --ntasks-per-node=1 --kill-on-bad-exit=1 bash {build_dir}/stages/{stage}/launch.sh"
        assert step in log
    # By hand, as a user would: the job decides, as `cascadec run` does, that the stage is done.
    job = slurm.run("sbatch", "--parsable", f"--output={slurm_rd.root}/by-hand.out", "--wait",
                    str(build_dir / "stages" / "s1" / "sbatch.sh"), f"--run-dir={slurm_rd.root}").strip()
    assert job.isdigit()
    assert "s1: done, unchanged; skipped" in (slurm_rd.root / "by-hand.out").read_text()


def test_status_shows_each_stages_job(runs, slurm) -> None:
    _, slurm_rd, _, _ = runs
    out = console()
    assert status(slurm_rd.root, console=out) == 0
    jobs = slurmcli.read_jobs(slurm_rd)
    text = out.file.getvalue()
    for stage in ("s1", "s2", "d"):
        assert re.search(rf"{stage} .* {jobs[stage]} completed", text), text


def _wait_for_lines(path: Path, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while len(read_jsonl(path)) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{path} never reached {count} lines")
        time.sleep(0.2)


def _start_when_requeued(slurm, job: str, timeout: float = 120) -> None:
    """Slurm holds a requeued job back for a while (its begin time); let it start soon after it is pending.
    slurmd revoked the job's old credential when it ended, and compares credential times in whole seconds: a
    start within that second is killed ("Job credential revoked"), so the start waits 2 s. The begin time can
    be set after the first update lands, so it is set again until the job has started."""
    deadline = time.monotonic() + timeout
    while slurmcli.job_states([job]).get(job, ("", ""))[0] != "PENDING":
        if time.monotonic() > deadline:
            pytest.fail(f"job {job} was not requeued")
        time.sleep(0.2)
    time.sleep(2)
    while slurmcli.job_states([job]).get(job, ("", ""))[0] == "PENDING":
        if time.monotonic() > deadline:
            pytest.fail(f"requeued job {job} never started")
        slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)  # fails once started
        time.sleep(1)


def test_requeued_job_resumes_from_the_sigterm_checkpoint(slurm, tmp_path, monkeypatch) -> None:
    steps = 10
    monkeypatch.setenv("TOY_STEP_SLEEP", "1")
    monkeypatch.setenv("TOY_STEP_LOG", str(tmp_path / "steps.log"))
    # save_every beyond the stage: the only checkpoint inside it is the one SIGTERM writes.
    build_dir = build(tmp_path, tiny_plan(stages=[cpu_sft("long", "base", steps=steps, save_every=100)]))
    rd = RunDir(tmp_path / "run")
    rc, out = submit_ok(build_dir, rd)
    assert rc == 0, out
    _wait_for_lines(rd.metrics("long"), 3)
    job = slurmcli.read_jobs(rd)["long"]
    slurm.run("scontrol", "requeue", job)
    _start_when_requeued(slurm, job)
    wait_jobs(rd)
    logs = job_outputs(rd)
    assert rd.stage_state("long")["status"] == "done", logs
    executed = (tmp_path / "steps.log").read_text().split("\n")[:-1]
    assert executed == [f"long {i}" for i in range(steps)], logs  # every step once: none lost, none repeated
    assert [r["step"] for r in read_jsonl(rd.metrics("long"))] == list(range(steps))
    resumed = re.search(r"resuming at step (\d+)", logs)
    assert resumed and 3 <= int(resumed.group(1)) < steps, logs
    assert "stopped by SIGTERM" in logs


def test_time_limit_warning_checkpoints_and_the_job_requeues_itself(slurm, tmp_path, monkeypatch) -> None:
    # `scancel --signal=TERM` signals the job's steps only, not its batch script: what `--signal=TERM@S` does
    # S seconds before the time limit. torchrun then exits 1, not 143; the job must still requeue itself.
    steps = 8
    monkeypatch.setenv("TOY_STEP_SLEEP", "1")
    monkeypatch.setenv("TOY_STEP_LOG", str(tmp_path / "steps.log"))
    build_dir = build(tmp_path, tiny_plan(stages=[cpu_sft("warned", "base", steps=steps, save_every=100)]))
    rd = RunDir(tmp_path / "run")
    rc, out = submit_ok(build_dir, rd)
    assert rc == 0, out
    _wait_for_lines(rd.metrics("warned"), 2)
    job = slurmcli.read_jobs(rd)["warned"]
    slurm.run("scancel", "--signal=TERM", job)
    _start_when_requeued(slurm, job)
    wait_jobs(rd)
    logs = job_outputs(rd)
    assert rd.stage_state("warned")["status"] == "done", logs
    executed = (tmp_path / "steps.log").read_text().split("\n")[:-1]
    assert executed == [f"warned {i}" for i in range(steps)], logs
    assert "stopped by SIGTERM" in logs and re.search(r"resuming at step [2-7]", logs), logs


def test_failed_stage_stops_its_descendants_then_resumes(slurm, tmp_path, monkeypatch) -> None:
    # Plan order f, c, a: c descends from f; a does not, and runs after c in the chain.
    plan = tiny_plan(stages=[cpu_sft("f", "base", steps=5), cpu_sft("c", "f", steps=2), cpu_sft("a", "base", steps=2)])
    build_dir = build(tmp_path, plan)
    rd = RunDir(tmp_path / "run")
    monkeypatch.setenv("TOY_KILL_AT_STEP", "3")  # f's trainer SIGKILLs itself at step 3; a has only 2 steps
    rc, out = submit_ok(build_dir, rd)
    assert rc == 0, out
    wait_jobs(rd)
    states = rd.read_state()["stages"]
    jobs = slurmcli.read_jobs(rd)
    assert states["f"]["status"] == "failed" and states["a"]["status"] == "done", job_outputs(rd)
    assert states.get("c", {}).get("status", "pending") == "pending"
    assert slurmcli.job_states([jobs["c"]])[jobs["c"]][0] == "CANCELLED"
    monkeypatch.delenv("TOY_KILL_AT_STEP")  # the fix
    rc, out = submit_ok(build_dir, rd, wait=True)
    assert rc == 0, out + job_outputs(rd)
    assert set(slurmcli.read_jobs(rd)) == {"f", "c"}  # a is done and unchanged: no job
    assert [r["step"] for r in read_jsonl(rd.metrics("f"))] == list(range(5))
    assert "[f] resuming at step 3/5" in job_outputs(rd)
    assert rd.stage_state("c")["status"] == "done"


def test_cancel_stops_the_jobs(slurm, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TOY_STEP_SLEEP", "1")
    build_dir = build(tmp_path, tiny_plan(stages=[cpu_sft("x", "base", steps=30), cpu_sft("y", "x", steps=2)]))
    rd = RunDir(tmp_path / "run")
    assert submit_ok(build_dir, rd)[0] == 0
    cancelled = slurmcli.cancel(rd)
    assert sorted(cancelled) == sorted(slurmcli.read_jobs(rd).values())
    wait_jobs(rd, timeout=120)
    rc, out = submit_ok(build_dir, rd, dry_run=True)
    assert rc == 0 and "(x, " in out

