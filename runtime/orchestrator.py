"""``cascadec run`` and ``cascadec status``: run a plan's stages in order, skip or resume them, report.

A stage is skipped when ``state.json`` has it ``done`` with the same training hash and eval hash
(``Stage.hash`` covers what determines its weights, including its parent's and teachers' hashes, so
changing a stage re-runs it and everything that descends from it; ``Stage.eval_hash`` adds every domain's
evals). A finished stage whose eval hash alone changed keeps its checkpoint and is re-evaluated. A
``running`` or ``failed`` stage with the same training hash resumes from its ``ckpt/``; a changed one starts
afresh (its directory, TensorBoard events and eval records are removed first). Each stage runs in its own
process group (``runtime.launch``); whatever happens to that process, the run directory stays resumable.

Before the first stage the base model is evaluated once (stage ``base`` in ``evals.jsonl``), so the final
table shows every domain's score after base -> stage 1 -> stage 2 -> ...
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from cascadec.contract.errors import UserError
from cascadec.contract.plan import ModelRef, Plan, Stage
from runtime.launch import stage_command, stage_env, world_size
from runtime.serving import servers
from runtime.progress import reader_safe
from runtime.scores import base_eval_hash, declared_evals, eval_hashes, missing_scores, print_scores, stage_hashes
from runtime.dryrun import print_actions
from runtime.signals import stop_child
from runtime.choices import choice_changed, rebuilt_dependencies, recheck, record_start
from runtime.teachers import announce_teachers
from runtime.state import BASE, RunDir, StateError, atomic_write_text, filter_jsonl, read_jsonl, replace_stage_evals

EXIT_FAILED = 1
EXIT_USAGE = 2
#: A stage's exit status after it checkpointed on SIGTERM or SIGINT (runtime.signals).
STOPPED = (128 + signal.SIGTERM, 128 + signal.SIGINT)


class RunError(UserError):
    """A problem the user must fix before the run can go on (bad target, run directory in use, ...)."""


# ------------------------------------------------------------------ plan and hashes


def resolve_plan_path(target: Path | str) -> Path:
    """``target`` is a build directory holding ``plan.json`` or a ``plan.json`` file."""
    target = Path(target)
    if target.is_dir():
        if (target / "plan.json").is_file():
            return target / "plan.json"
        raise RunError(f"`{target}` has no plan.json\nhelp: compile the spec first: `cascadec compile SPEC`")
    if target.is_file() and target.suffix == ".json":
        return target
    if target.suffix == ".cascade":
        raise RunError(f"`{target}` is a spec, not a build\nhelp: `cascadec run {target}` compiles it first")
    raise RunError(f"`{target}` does not exist\nhelp: pass a build directory or its plan.json")


def load_plan(path: Path) -> Plan:
    try:
        return Plan.from_json(path.read_text())
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(
            f"cannot read plan `{path}`: {first}\nhelp: recompile the spec with `cascadec compile`"
        ) from None


def plan_actions(plan: Plan, rd: RunDir) -> list[tuple[Stage, str]]:
    """What ``run`` will do with each stage: ``skip``, ``reeval`` (evaluate its final checkpoint again),
    ``recheck`` (re-resolve its ``best(...)`` teachers, then keep or retrain it: ``runtime.choices``),
    ``resume`` (from step N) or ``run`` (from scratch).

    A stage re-runs from scratch when its training hash changed, when its parent or a teacher re-runs, or
    when one of them was trained again since it started (``runtime.choices.rebuilt_dependencies``); a
    finished stage whose training hash is unchanged but whose eval hash changed, or whose eval records are
    missing from ``evals.jsonl``, is re-evaluated.
    """
    hashes, evals = stage_hashes(plan), eval_hashes(plan)
    states = rd.read_state()["stages"]
    missing = missing_scores(plan, rd)
    fresh: set[str] = set()
    actions = []
    for stage in plan.stages:
        entry = states.get(stage.name, {})
        same = entry.get("hash") == hashes[stage.name]
        upstream = stage.dependencies() & fresh or rebuilt_dependencies(stage, entry, states)
        finished = entry.get("status") == "done" and (rd.final(stage.name) / "config.json").is_file()
        if same and not upstream and finished:
            same_evals = entry.get("eval_hash") == evals[stage.name] and not missing[stage.name]
            action = "recheck" if choice_changed(plan, stage, entry) else "skip" if same_evals else "reeval"
        elif same and not upstream and entry.get("status") in ("running", "failed"):
            action = "resume"
        else:
            action = "run"
            fresh.add(stage.name)
        actions.append((stage, action))
    return actions


# ------------------------------------------------------------------ running


@contextlib.contextmanager
def run_lock(rd: RunDir) -> Iterator[None]:
    """Hold an exclusive lock on the run directory (released by the kernel even on SIGKILL).

    Raises RunError when the run directory is a file or cannot be created or written.
    """
    if rd.root.exists() and not rd.root.is_dir():
        raise RunError(f"run directory `{rd.root}` is a file\nhelp: pass another `--run-dir`, or move the file away")
    try:
        rd.root.mkdir(parents=True, exist_ok=True)
        lock = open(rd.root / ".lock", "w")
    except OSError as e:
        raise RunError(f"cannot write to run directory `{rd.root}`: {e.strerror or e}\n"
                       "help: pass a writable `--run-dir`, or fix its permissions") from None
    with lock as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(
                f"another `cascadec run` is using `{rd.root}`\nhelp: wait for it, or stop it first"
            ) from None
        yield


def run_in_progress(rd: RunDir) -> bool:
    """Whether a `cascadec run` holds the run directory's lock now (``status`` tells a live stage from one
    whose run was killed, which ``state.json`` alone cannot: a SIGKILL leaves it ``running``)."""
    try:
        with open(rd.root / ".lock") as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _die_with_parent() -> None:
    # Linux: the stage process gets SIGKILL when the orchestrator dies, so no orphan keeps writing.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def reset_stage(rd: RunDir, name: str) -> None:
    """Forget a stage's previous attempt: its directory, TensorBoard events and eval records."""
    shutil.rmtree(rd.stage_dir(name), ignore_errors=True)
    shutil.rmtree(rd.tb(name), ignore_errors=True)
    filter_jsonl(rd.evals_jsonl, lambda r: r.get("stage") != name)
    rd.update_stage(name, status="pending", step=0, stop_reason=None, checkpoint=None, teachers=None,
                    chosen=None, choice_hash=None, build=None, built_on=None, decontaminated=None)


def drop_stale_evals(rd: RunDir, stage: Stage) -> None:
    """Before resuming a stage whose evals changed: drop its eval records measured with the old settings,
    except those of the evals its ``until`` rules read (their settings are in its training hash, so they are
    unchanged, and a plateau rule needs their history)."""
    read = {f"{d}.{e}" for d, e in stage.until_evals()}
    filter_jsonl(rd.evals_jsonl,
                 lambda r: r.get("stage") != stage.name or f"{r.get('domain')}.{r.get('eval')}" in read)


def launch(plan_json: Path, rd: RunDir, name: str, nproc: int, nnodes: int,
           out: TextIO | None = None, command: list[str] | None = None) -> tuple[int, str | None]:
    """Run one stage's process group; returns (exit status, its user-facing error message or None).

    The stage's standard output (progress lines, eval scores) goes to ``out`` when that is not a terminal:
    the stage then never writes into the user's pipe itself, so a reader that goes away (``| head``) ends
    the printing (``out`` is a ``runtime.progress.ReaderSafeStream``), not the stage. On a terminal (or
    without ``out``) the stage writes to it directly, which keeps its rich progress bar.
    """
    rd.stage_dir(name).mkdir(parents=True, exist_ok=True)
    rd.error_file(name).unlink(missing_ok=True)
    cmd = command or stage_command(plan_json, name, rd.root, nproc=nproc, nnodes=nnodes)
    forward = out is not None and not out.isatty()
    with open(rd.log(name), "a") as log:
        log.write(f"--- {' '.join(cmd)}\n")
        log.flush()
        piped: dict[str, Any] = {"stdout": subprocess.PIPE, "encoding": "utf-8", "errors": "replace"} if forward else {}
        proc = subprocess.Popen(cmd, stderr=log, env=stage_env(nproc), preexec_fn=_die_with_parent, **piped)
        try:
            if forward:
                for line in proc.stdout:
                    out.write(line)
                    out.flush()
            rc = proc.wait()
        except KeyboardInterrupt as stop:
            # The stage checkpoints its current step and exits (runtime.signals); a Slurm job's SIGTERM
            # (runtime.slurm.job) is passed on as SIGTERM, with that job's grace time.
            stop_child(proc, getattr(stop, "signum", signal.SIGINT), getattr(stop, "grace_s", 30),
                       lambda killed: _resume_point(rd, name, killed))
            raise
    err = rd.error_file(name)
    return rc, err.read_text().strip() if err.is_file() else None


def _resume_point(rd: RunDir, name: str, killed: bool) -> str:
    """Where ``cascadec run`` picks ``name`` up after a stop, and (``killed``) which finished steps it redoes."""
    if name == BASE:
        return "`cascadec run` evaluates the base model again"
    from runtime.loop import checkpoint_step

    saved, finished = checkpoint_step(rd.ckpt(name)), len(read_jsonl(rd.metrics(name)))
    text = (f"`cascadec run` resumes stage `{name}` from its checkpoint after step {saved}" if saved
            else f"`cascadec run` starts stage `{name}` again at step 1 (no checkpoint yet)")
    if killed and finished > saved:
        span = f"step {finished}" if finished == saved + 1 else f"steps {saved + 1}-{finished}"
        text += f"; {span}, finished since its last checkpoint, will be redone"
    return text


def reevaluate(plan: Plan, rd: RunDir, stage: Stage, nproc: int | None,
               out: TextIO | None = None) -> tuple[int, str | None]:
    """Evaluate the finished ``stage``'s ``final/`` checkpoint on every eval again and replace all of its
    eval records with the new ones (one atomic write); returns (exit status, user-facing error or None).

    The base-model eval job (``runtime.entry --stage base``) evaluates ``plan.base`` with the first stage's
    resources, mode and engine, so it runs here on a derived plan: base = the stage's checkpoint, stages =
    [the stage], seed = the seed of the stage's own final evals (stage seed + finished steps, as in
    ``runtime.loop``), in the scratch run directory ``stages/NAME/reeval/`` (kept on failure for its log).
    The new records carry the stage's name and finished step. Its intermediate eval points are dropped:
    they were measured with the old settings on weights that are no longer kept.
    """
    done = int(rd.stage_state(stage.name).get("step", stage.params.steps or 0))
    scratch = RunDir(rd.stage_dir(stage.name) / "reeval")
    shutil.rmtree(scratch.root, ignore_errors=True)
    derived = plan.model_copy(update={"base": ModelRef(kind="path", name=str(rd.final(stage.name).resolve())),
                                      "seed": stage.seed + done, "stages": [stage]})
    atomic_write_text(scratch.plan_json, derived.to_json())
    rc, msg = servers.served(derived, scratch, stage, lambda: launch(  # a rollout server evaluates too
        scratch.plan_json, scratch, BASE, world_size(stage, nproc), stage.resources.nnodes, out), rollout_only=True)
    if rc != 0:
        prefix = f"stage `{BASE}`: "
        return rc, msg.removeprefix(prefix) if msg else None
    records = [{**r, "stage": stage.name, "step": done} for r in read_jsonl(scratch.evals_jsonl)
               if r.get("stage") == BASE]
    replace_stage_evals(rd.evals_jsonl, stage.name, records)
    rd.update_stage(stage.name, eval_hash=eval_hashes(plan)[stage.name])
    shutil.rmtree(scratch.root, ignore_errors=True)
    return 0, None


def _fail(console: Console, rd: RunDir, name: str, rc: int, message: str | None, *, resumes: bool = True) -> int:
    step = rd.stage_state(name).get("step", 0) if name != BASE and resumes else 0
    console.print(f"[bold red]error[/]: {message or f'stage `{name}` exited with status {rc}; see {rd.log(name)}'}",
                  highlight=False, soft_wrap=True)
    console.print("the run is resumable: fix the problem and run `cascadec run` again"
                  + (f" (stage `{name}` resumes at step {step})" if step else ""), highlight=False, soft_wrap=True)
    return EXIT_FAILED


def run(target: Path | str, run_dir: Path | str | None = None, *, nproc: int | None = None,
        dry_run: bool = False, console: Console | None = None) -> int:
    """Run every stage of a compiled plan; returns the exit status (0 ok, 1 a stage failed, 2 usage).

    ``target``: a build directory or a ``plan.json``. ``run_dir`` defaults to ``runs/<plan name>``.
    ``nproc`` overrides every stage's ``resources.nproc_per_node``. ``dry_run`` prints what would run.
    """
    console = console or Console()
    console.file = reader_safe(console.file)
    try:
        plan_path = resolve_plan_path(target)
        plan = load_plan(plan_path)
        rd = RunDir(run_dir if run_dir is not None else Path("runs") / plan.name)
        check_same_cascade(plan, rd)
        from runtime.external import verify_all  # torch: imported only when a run starts

        verify_all(plan.checkpoints, RunError)
        if dry_run:
            print_actions(console, plan, plan_actions(plan, rd), rd)
            return 0
        with run_lock(rd):
            return _run_locked(plan, rd, nproc, console)
    except (RunError, StateError) as e:
        console.print(f"[bold red]error[/]: {e}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        console.print("interrupted: the run is resumable with `cascadec run`")
        return 130


def check_local_data(plan: Plan) -> None:
    """Load the spec-local data (``jsonl`` files and ``inline`` rows) of every domain a stage trains on
    and of every eval, so that a wrong path, a malformed row or a missing column is reported before the
    base-model evals rather than after them, and so is a decontaminated domain whose local evals cover all its
    local rows (its other evals could only drop more). Generators and datasets on disk are checked by the stage.

    Raises runtime.data.DataError (message with file:line and a ``help:`` line).
    """
    from runtime.data import load_source
    from runtime.decontaminate import decontaminate

    trained = {d for s in plan.stages for d, w in (s.domains or {}).items() if w > 0}
    for name in sorted(plan.domains):
        domain = plan.domains[name]
        evals = {e.name: load_source(e.data, domain=name, split=f"eval/{e.name}") for e in domain.evals
                 if e.data.kind in ("jsonl", "inline")}
        if name in trained and domain.train.kind in ("jsonl", "inline"):
            rows = load_source(domain.train, domain=name, split="train")
            if domain.decontaminate and evals:
                decontaminate(name, rows, evals)


def check_same_cascade(plan: Plan, rd: RunDir) -> None:
    """Refuse a run directory that holds another cascade: re-running would reset its stages of the same
    names. A changed spec of the same cascade is fine (its changed stages re-run).

    Raises RunError.
    """
    if not rd.plan_json.is_file():
        return
    try:
        previous = json.loads(rd.plan_json.read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return  # unreadable: this run rewrites it, as it always does
    if previous is not None and previous != plan.name:
        raise RunError(f"run directory `{rd.root}` holds the run of cascade `{previous}`, not `{plan.name}`\n"
                       f"help: pass another `--run-dir` (the default is `runs/{plan.name}`), or delete that "
                       "directory to reuse it")


def _run_locked(plan: Plan, rd: RunDir, nproc: int | None, console: Console) -> int:
    failed = prepare_run(plan, rd, console) or ensure_base_evals(plan, rd, nproc, console)
    if failed is not None:
        return failed
    for stage in plan.stages:
        # decided one stage at a time: a re-checked `best(...)` choice may retrain a stage, and its dependants
        action = dict((s.name, a) for s, a in plan_actions(plan, rd))[stage.name]
        failed = run_action(plan, rd, stage, action, nproc, console)
        if failed is not None:
            return failed
    if declared_evals(plan):
        print_scores(console, plan, rd)
        console.print(f"the cascade chart (teachers marked) and training curves: cascadec report {rd.root}",
                      highlight=False, soft_wrap=True)
    else:
        console.print(f"{plan.name}: done (no evals in the spec: add `eval NAME = ...` to a domain to score "
                      "each stage)", highlight=False)
    return 0


# The steps of a run, shared by the local loop above and the Slurm jobs (runtime.slurm.job): each returns
# None when the run can go on, else its exit status.


def prepare_run(plan: Plan, rd: RunDir, console: Console) -> int | None:
    """Check the spec-local data and write the run directory's ``plan.json``."""
    from runtime.data import DataError
    from runtime.sandbox import describe

    console.print(describe(), highlight=False, soft_wrap=True)

    try:
        check_local_data(plan)
    except DataError as e:
        console.print(f"[bold red]error[/]: {e}", highlight=False, soft_wrap=True)
        console.print("the run is resumable: fix the data and run `cascadec run` again", highlight=False)
        return EXIT_FAILED
    atomic_write_text(rd.plan_json, plan.to_json())
    return None


def base_evals_needed(plan: Plan, rd: RunDir) -> bool:
    base = rd.read_state().get(BASE, {})
    return bool(plan.stages) and not (base.get("status") == "done" and base.get("hash") == base_eval_hash(plan)
                                      and not missing_scores(plan, rd)[BASE])


def ensure_base_evals(plan: Plan, rd: RunDir, nproc: int | None, console: Console) -> int | None:
    """Evaluate the base model unless its scores under the current evals are recorded."""
    if not base_evals_needed(plan, rd):
        return None
    console.print("[bold]base[/]: evaluating the base model", highlight=False)
    first = plan.stages[0]
    rc, msg = servers.served(plan, rd, first, lambda: launch(  # base evals use the first stage's engine
        rd.plan_json, rd, BASE, world_size(first, nproc), first.resources.nnodes, console.file), rollout_only=True,
        start=bool(declared_evals(plan)))
    if rc != 0:
        return _fail(console, rd, BASE, rc, msg)
    rd.update_section(BASE, status="done", hash=base_eval_hash(plan))
    return None


def run_action(plan: Plan, rd: RunDir, stage: Stage, action: str, nproc: int | None, console: Console,
               command: list[str] | None = None) -> int | None:
    """Do what :func:`plan_actions` decided for ``stage``: skip it, re-evaluate it, or (re)start or resume
    its training. ``command`` replaces the stage's local process group (a Slurm job's ``srun`` step)."""
    evals = eval_hashes(plan)
    if action == "skip":
        console.print(f"[bold]{stage.name}[/]: done, unchanged; skipped", highlight=False)
        return None
    if action == "recheck":
        kept, message = recheck(plan, rd, stage)
        console.print(f"[bold]{stage.name}[/]: {escape(message)}", highlight=False)
        if kept:
            return run_action(plan, rd, stage, dict((s.name, a) for s, a in plan_actions(plan, rd))[stage.name],
                              nproc, console, command)
        action = "run"
    if action == "reeval":
        why = ("eval scores missing from evals.jsonl" if rd.stage_state(stage.name).get("eval_hash")
               == evals[stage.name] else "evals changed")
        console.print(f"[bold]{stage.name}[/]: done, training unchanged; {why}: re-evaluating its "
                      "final checkpoint", highlight=False)
        rc, msg = reevaluate(plan, rd, stage, nproc, console.file)
        return _fail(console, rd, stage.name, rc, msg, resumes=False) if rc != 0 else None
    if action == "run":
        reset_stage(rd, stage.name)
    elif rd.stage_state(stage.name).get("eval_hash") != evals[stage.name]:
        drop_stale_evals(rd, stage)
    resumes_at = rd.stage_state(stage.name).get("step", 0) if action == "resume" else 0
    rd.update_stage(stage.name, status="running", hash=stage_hashes(plan)[stage.name], eval_hash=evals[stage.name],
                    stopped_by=None)
    record_start(plan, rd, stage, fresh=action == "run")
    console.print(f"[bold]{stage.name}[/]: {stage.kind} from `{stage.parent}`, {stage.params.steps_label()} steps"
                  + (" (resuming)" if resumes_at else ""), highlight=False)
    announce_teachers(rd, stage, console)
    # a Slurm step runs launch.sh on every node, which starts that node's servers itself
    rc, msg = servers.served(plan, rd, stage, lambda: launch(rd.plan_json, rd, stage.name, world_size(stage, nproc),
                             stage.resources.nnodes, console.file, command=command), start=command is None)
    entry = rd.stage_state(stage.name)
    if rc != 0 and entry.get("stopped_by"):
        rc = 128 + entry["stopped_by"]
    if rc in STOPPED:
        # Checkpointed on SIGTERM/SIGINT (runtime.signals): interrupted, not failed; it resumes there.
        console.print(f"[bold]{stage.name}[/]: stopped by a signal at step {entry.get('step', 0)}; resumable",
                      highlight=False)
        return rc
    if rc != 0 or entry.get("status") != "done":
        rd.update_stage(stage.name, status="failed")
        return _fail(console, rd, stage.name, rc, msg)
    if entry.get("stop_reason"):
        early = entry.get("step", stage.params.steps) < stage.params.steps
        console.print(f"[bold]{stage.name}[/]: {'stopped early' if early else 'done'}: {escape(entry['stop_reason'])}",
                      highlight=False)
    return None