"""The entry point of every Slurm job of a cascade: ``python -m runtime.slurm.job --plan P --stage S
--run-dir D [-- SRUN_STEP...]`` (the stage's ``sbatch.sh`` execs it; ``--stage base`` evaluates the base model).

Between stages the job makes the decisions of a local ``cascadec run`` with the very same functions of
``runtime.orchestrator``: ``plan_actions`` (skip by hash, re-evaluate, run afresh or resume), then
``run_action`` (which resolves nothing itself: ``best(...)`` teachers and ``until`` rules are resolved inside
the stage process, from ``evals.jsonl``, exactly as locally). Only the stage's process group differs: it is
the ``srun`` step given after ``--`` (launch.sh on every node) instead of a local ``torchrun``.

SIGTERM reaches the stage when Slurm preempts or requeues the job, when ``scancel`` kills it, and (``#SBATCH
--signal=TERM@S``, sent to the job's steps) S seconds before its time limit; a SIGTERM to the job itself is
passed on to the step. The stage checkpoints the step in progress and exits 143 (runtime.signals); the stage stays ``running`` in
``state.json``, so the next start of the job resumes it. When Slurm is not already ending the job (the time
limit warning), the job requeues itself with ``scontrol requeue``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from runtime.orchestrator import (
    STOPPED, RunError, ensure_base_evals, load_plan, plan_actions, run_action, run_lock,
)
from runtime.slurm.slurmcli import SlurmError, run_tool
from runtime.state import BASE, RunDir, StateError

#: How long a job waits for the run directory's lock (held briefly by the submitting `cascadec run`).
LOCK_WAIT_S = 300


class Terminated(KeyboardInterrupt):
    """SIGTERM in the job: ``runtime.orchestrator.launch`` passes ``signum`` on to the stage and waits up
    to ``grace_s`` for its checkpoint (Slurm's KillWait ends it sooner if it must)."""

    signum = signal.SIGTERM
    grace_s = 3600


@contextlib.contextmanager
def terminate_once() -> Iterator[dict[str, bool]]:
    """Turn the first SIGTERM into :class:`Terminated`; later ones are ignored (the stage has its own)."""
    seen = {"term": False}

    def handle(_signum: int, _frame: Any) -> None:
        if not seen["term"]:
            seen["term"] = True
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def wait_for_lock(rd: RunDir, timeout_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the run directory's lock (``runtime.orchestrator.run_lock``), waiting up to ``timeout_s`` for it."""
    deadline = time.monotonic() + timeout_s
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(run_lock(rd))
                break
            except RunError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield


def run_job(plan_json: Path, stage: str, rd: RunDir, step: list[str], console: Console) -> int:
    """Do this job's part of the cascade; returns its exit status (0: the stage is done)."""
    plan = load_plan(plan_json)
    if stage == BASE:
        return ensure_base_evals(plan, rd, None, console) or 0
    actions = {s.name: (s, a) for s, a in plan_actions(plan, rd)}
    if stage not in actions:
        raise RunError(f"the plan has no stage `{stage}`")
    st, action = actions[stage]
    return run_action(plan, rd, st, action, None, console, command=step or None) or 0


def requeue_if_running() -> None:
    """``scontrol requeue`` this job, unless Slurm itself is already ending it (preemption, requeue,
    scancel: then its state is no longer RUNNING)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return
    record = run_tool(["scontrol", "-o", "show", "job", job], check=False)
    if " JobState=RUNNING " in f" {record} ":
        run_tool(["scontrol", "requeue", job], check=False)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    step = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(prog="python -m runtime.slurm.job", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, type=Path)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--run-dir", required=True, type=Path)
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    console = Console(file=sys.stdout, color_system=None, width=160, soft_wrap=True)
    rd = RunDir(args.run_dir)
    with terminate_once() as seen:
        try:
            with wait_for_lock(rd):
                rc = run_job(args.plan, args.stage, rd, step, console)
        except Terminated:
            rc = 128 + signal.SIGTERM
        except (RunError, StateError, SlurmError) as e:
            console.print(f"error: {e}", highlight=False)
            return 2
    if seen["term"] or rc in STOPPED:
        console.print(f"{args.stage}: stopped by SIGTERM; the step in progress was checkpointed", highlight=False)
        requeue_if_running()
    return rc


if __name__ == "__main__":
    sys.exit(main())
