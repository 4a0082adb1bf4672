"""``cascadec run SPEC --launcher slurm``: submit a compiled cascade as Slurm jobs.

One job per stage that has work to do (``runtime.orchestrator.plan_actions``: a finished, unchanged stage
gets no job), plus one for the base-model evals when they are missing. Each stage's job is its build's
``stages/NAME/sbatch.sh``, submitted with

- ``--dependency=afterok:`` its parent's, its teachers' (every ``best(...)`` candidate) and the base job:
  it starts only once they succeeded, and ``--kill-on-invalid-dep=yes`` cancels it when one fails, so a
  failed stage stops its descendants and nothing else;
- ``afterany:`` the previous job in plan order, so the stages of one run directory run one at a time in the
  local run's order (they share ``state.json`` and ``evals.jsonl``) and a failed side branch does not stop
  the main line;
- ``--requeue`` and ``--signal=TERM@LEAD`` (in the script): preemption and the time limit checkpoint the
  step in progress (runtime.signals) and the requeued job resumes it.

Stages whose training will start afresh are reset here, before any job starts, as the local run resets
them when it reaches them; every other decision is made by the job when it starts (runtime.slurm.job).
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cascadec.contract.plan import Plan
from runtime.launch import repo_root
from runtime.orchestrator import (
    EXIT_FAILED, EXIT_USAGE, RunError, base_evals_needed, check_same_cascade, load_plan,
    plan_actions, prepare_run, reset_stage, resolve_plan_path, run_lock,
)
from runtime.progress import reader_safe
from runtime.scores import print_scores
from runtime.slurm import slurmcli
from runtime.slurm.paths import shared_path_warnings
from runtime.state import BASE, RunDir, StateError


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how long the jobs run; each set field becomes an ``sbatch`` option, which overrides the
    script's own ``#SBATCH`` line. ``extra`` are further sbatch options, passed as given."""

    partition: str | None = None
    account: str | None = None
    time: str | None = None
    qos: str | None = None
    signal_lead_s: int | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)

    def sbatch_args(self) -> list[str]:
        named = {"partition": self.partition, "account": self.account, "time": self.time, "qos": self.qos}
        args = [f"--{k}={v}" for k, v in named.items() if v]
        if self.signal_lead_s is not None:
            args.append(f"--signal=TERM@{self.signal_lead_s}")
        for extra in self.extra:
            if not extra.startswith("-"):
                raise RunError(f"`--sbatch {extra}` is not an sbatch option\nhelp: pass options such as "
                               "`--sbatch=--mem=64G` or `--sbatch=--constraint=h100`")
            args.append(extra)
        return args


def job_env(stage_dir: Path | None = None) -> dict[str, str]:
    """The environment a job inherits (sbatch exports it): this Python and its scripts first on PATH
    (launch.sh calls `torchrun`), this checkout on PYTHONPATH, and the stage's build directory."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root()), env.get("PYTHONPATH", "")) if p)
    env["CASCADEC_PYTHON"] = sys.executable
    env.pop("CASCADEC_STAGE_DIR", None)
    if stage_dir is not None:
        env["CASCADEC_STAGE_DIR"] = str(stage_dir)
    return env


def job_commands(plan: Plan, build: Path, rd: RunDir, options: SlurmOptions,
                 actions: list[tuple[str, str]]) -> list[tuple[str, list[str], Path | None]]:
    """``(stage or base, sbatch arguments with dependencies as {names}, stage dir)`` in submission order,
    for the stages and base evals that have work (``actions``: (name, action) with base first)."""
    common = [*options.sbatch_args(), "--kill-on-invalid-dep=yes"]
    logs = rd.root.resolve() / "slurm"
    jobs = []
    for name, _ in actions:
        out = [f"--output={logs}/{name}-%j.out", "--open-mode=append"]
        if name == BASE:
            plan_json, run_dir = (shlex.quote(str(p)) for p in (build / "plan.json", rd.root.resolve()))
            cmd = f'exec "$CASCADEC_PYTHON" -m runtime.slurm.job --plan {plan_json} --stage {BASE} --run-dir {run_dir}'
            jobs.append((name, [f"--job-name={plan.name}.{BASE}", "--nodes=1", *common, *out, "--wrap", cmd], None))
            continue
        stage_dir = build / "stages" / name
        jobs.append((name, [*common, *out, str(stage_dir / "sbatch.sh"), f"--run-dir={rd.root.resolve()}"],
                     stage_dir))
    return jobs


def dependencies(plan: Plan, name: str, submitted: dict[str, str], previous: str | None) -> list[str]:
    """The ``--dependency`` option of ``name``'s job (empty when it has none)."""
    if name == BASE:
        return []
    stage = plan.stage(name)
    ok = sorted({submitted[d] for d in {*stage.dependencies(), BASE} if d in submitted}, key=int)
    parts = [f"afterok:{':'.join(ok)}"] if ok else []
    if previous and previous not in ok:
        parts.append(f"afterany:{previous}")
    return [f"--dependency={','.join(parts)}"] if parts else []


def submit(target: Path | str, run_dir: Path | str | None = None, *, options: SlurmOptions = SlurmOptions(),
           dry_run: bool = False, wait: bool = False, console: Console | None = None) -> int:
    """Submit the cascade of a build directory to Slurm; returns 0, 1 (a stage failed, with ``wait``) or 2."""
    console = console or Console()
    console.file = reader_safe(console.file)
    try:
        plan_path = resolve_plan_path(target)
        build = plan_path.parent.resolve()
        plan = load_plan(plan_path)
        rd = RunDir(run_dir if run_dir is not None else Path("runs") / plan.name)
        check_same_cascade(plan, rd)
        from runtime.external import verify_all

        verify_all(plan.checkpoints, RunError)
        sbatch_args = options.sbatch_args()
        for warning in shared_path_warnings({"build directory": build, "run directory": rd.root.resolve()}):
            console.print(f"[bold yellow]warning[/]: {warning}", highlight=False, soft_wrap=True)
        if dry_run:
            return _dry_run(plan, build, rd, options, console)
        queued = slurmcli.active(list(slurmcli.read_jobs(rd).values()))
        if queued:
            raise RunError(f"jobs {', '.join(queued)} of an earlier submission into `{rd.root}` are still queued "
                           f"or running\nhelp: wait for them (`cascadec status {rd.root}`), or cancel them "
                           f"(`cascadec cancel {rd.root}`)")
        with run_lock(rd):
            failed = prepare_run(plan, rd, console)
            if failed is not None:
                return failed
            actions = _work(plan, rd, reset=True)
            jobs = _submit_all(plan, build, rd, options, actions)
            slurmcli.write_jobs(rd, jobs, sbatch_args)
    except (RunError, StateError, slurmcli.SlurmError) as e:
        console.print(f"[bold red]error[/]: {e}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    _print_jobs(console, plan, rd, jobs, dict(actions))
    if not wait:
        return 0
    slurmcli.wait_until_done(list(jobs.values()))
    return _outcome(plan, rd, console)


def _work(plan: Plan, rd: RunDir, *, reset: bool) -> list[tuple[str, str]]:
    """(name, action) of the base evals and stages that need a job; with ``reset``, stages that start afresh
    are reset now, so that each job decides as the local run does."""
    work = [(BASE, "evaluate")] if base_evals_needed(plan, rd) else []
    rechecked: set[str] = set()  # a re-checked choice may retrain the stage, and then its dependants
    for stage, action in plan_actions(plan, rd):
        if action == "recheck" or stage.dependencies() & rechecked:
            rechecked.add(stage.name)
        if action == "skip" and stage.name not in rechecked:
            continue
        if action == "run" and reset:
            reset_stage(rd, stage.name)
        work.append((stage.name, action))
    return work


def _submit_all(plan: Plan, build: Path, rd: RunDir, options: SlurmOptions,
                actions: list[tuple[str, str]]) -> dict[str, str]:
    (rd.root / "slurm").mkdir(parents=True, exist_ok=True)
    submitted: dict[str, str] = {}
    previous = None
    for name, args, stage_dir in job_commands(plan, build, rd, options, actions):
        deps = dependencies(plan, name, submitted, previous)
        submitted[name] = previous = slurmcli.sbatch([*deps, *args], job_env(stage_dir))
    return submitted


def _dry_run(plan: Plan, build: Path, rd: RunDir, options: SlurmOptions, console: Console) -> int:
    actions = _work(plan, rd, reset=False)
    console.print(f"dry run: would submit {len(actions)} job(s) for {rd.root}", highlight=False)
    fake = {}
    previous = None
    for name, args, _ in job_commands(plan, build, rd, options, actions):
        deps = dependencies(plan, name, fake, previous)
        fake[name] = previous = f"{len(fake) + 1}"
        console.print(f"job {fake[name]} ({name}, {dict(actions)[name]}): sbatch {' '.join([*deps, *args])}",
                      highlight=False, soft_wrap=True)
    return 0


def _print_jobs(console: Console, plan: Plan, rd: RunDir, jobs: dict[str, str], actions: dict[str, str]) -> None:
    table = Table(title=f"{plan.name}: submitted to Slurm")
    for col in ("stage", "action", "job"):
        table.add_column(col)
    for name, job in jobs.items():
        table.add_row(name, actions.get(name, ""), job)
    console.print(table)
    skipped = [s.name for s in plan.stages if s.name not in jobs]
    if skipped:
        console.print(f"done and unchanged (no job): {', '.join(skipped)}", highlight=False)
    console.print(f"follow it with `cascadec status {rd.root}`; stop it with `cascadec cancel {rd.root}`",
                  highlight=False, soft_wrap=True)


def _outcome(plan: Plan, rd: RunDir, console: Console) -> int:
    states = rd.read_state()["stages"]
    unfinished = [s.name for s in plan.stages if states.get(s.name, {}).get("status") != "done"]
    if unfinished:
        console.print(f"[bold red]error[/]: stages not done: {', '.join(unfinished)}; see {rd.root / 'slurm'}\n"
                      "the run is resumable: fix the problem and submit again", highlight=False, soft_wrap=True)
        return EXIT_FAILED
    print_scores(console, plan, rd)
    return 0
