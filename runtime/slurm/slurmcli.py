"""Slurm's command-line tools, and ``slurm.json``: the jobs of a run directory's last submission.

Every call goes through the ``sbatch``/``squeue``/``scontrol``/``scancel`` on ``PATH`` (with the caller's
``SLURM_CONF``), so the same code drives a site's cluster and the one-node test cluster. Errors of the tools
become :class:`SlurmError` with their own message and a ``help:`` line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cascadec.contract.errors import UserError
from runtime.state import RunDir, atomic_write_json

#: Job states in which a job still holds or waits for resources (squeue's long names).
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
          "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "PREEMPTED"}


class SlurmError(UserError):
    """A Slurm tool is missing or refused a request (the message is for the user)."""


def run_tool(args: Sequence[str], *, env: Mapping[str, str] | None = None, check: bool = True) -> str:
    """Run a Slurm client command; returns its stdout. Raises SlurmError when it is missing or fails."""
    if shutil.which(args[0]) is None:
        raise SlurmError(f"`{args[0]}` is not on PATH\nhelp: run on a Slurm login node, or use the local "
                         "launcher (`cascadec run` without `--launcher slurm`)")
    out = subprocess.run(list(args), env=dict(env) if env is not None else None, capture_output=True, text=True)
    if check and out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()
        raise SlurmError(f"`{' '.join(args[:2])} ...` failed: {detail[-1] if detail else f'exit {out.returncode}'}"
                         "\nhelp: check the Slurm options (`--partition`, `--account`, `--qos`, `--time`, `--sbatch`)")
    return out.stdout


def sbatch(args: Sequence[str], env: Mapping[str, str]) -> str:
    """Submit with ``sbatch --parsable ARGS``; returns the job id."""
    return run_tool(["sbatch", "--parsable", *args], env=env).strip().split(";")[0]


def job_states(job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``{job id: (state, reason)}`` of the jobs Slurm still knows (finished jobs are forgotten after its
    ``MinJobAge``; those are missing from the result)."""
    if not job_ids:
        return {}
    try:
        out = run_tool(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r"])
    except SlurmError as e:
        if "Invalid job id" in str(e):  # squeue's answer when every job asked for is gone
            return {}
        raise
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] in job_ids:
            states[parts[0]] = (parts[1], "" if parts[2] in ("None", "(null)") else parts[2])
    return states


def active(job_ids: Sequence[str]) -> list[str]:
    """The jobs among ``job_ids`` that are pending or running."""
    return [j for j, (state, _) in job_states(job_ids).items() if state in ACTIVE]


def wait_until_done(job_ids: Sequence[str], poll_s: float = 1.0, patience_s: float = 300) -> None:
    """Block until none of ``job_ids`` is pending or running. An unreachable controller is asked again
    until it has failed for ``patience_s`` in a row (then SlurmError)."""
    failing_since = None
    while True:
        try:
            if not active(job_ids):
                return
            failing_since = None
        except SlurmError:
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > patience_s:
                raise
        time.sleep(poll_s)


# ------------------------------------------------------------------ slurm.json


def records_path(rd: RunDir) -> Path:
    return rd.root / "slurm.json"


def read_jobs(rd: RunDir) -> dict[str, str]:
    """``{stage or "base": job id}`` of the last submission into ``rd`` ({} when it never went to Slurm)."""
    try:
        data: Any = json.loads(records_path(rd).read_text())
    except (OSError, ValueError):
        return {}
    jobs = data.get("jobs") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in jobs.items()} if isinstance(jobs, dict) else {}


def write_jobs(rd: RunDir, jobs: Mapping[str, str], sbatch_args: Sequence[str]) -> None:
    atomic_write_json(records_path(rd), {"jobs": dict(jobs), "sbatch_args": list(sbatch_args)})


def job_column(rd: RunDir) -> dict[str, str]:
    """``{stage or "base": "JOB state"}`` for ``cascadec status`` ({} when the run was never submitted)."""
    jobs = read_jobs(rd)
    if not jobs:
        return {}
    try:
        states = job_states(list(jobs.values()))
    except SlurmError:
        return {name: f"{job} (squeue unavailable)" for name, job in jobs.items()}
    column = {}
    for name, job in jobs.items():
        state, reason = states.get(job, ("", ""))
        column[name] = (f"{job} {state.lower()}" + (f" ({reason})" if reason and state == "PENDING" else "")
                        if state else f"{job} (ended; no longer in squeue)")
    return column


def cancel(rd: RunDir) -> list[str]:
    """``scancel`` every pending or running job of the run's last submission; returns their ids. A running
    stage gets SIGTERM and checkpoints its current step (runtime.signals), so ``cascadec run`` resumes it."""
    jobs = active(list(read_jobs(rd).values()))
    if jobs:
        run_tool(["scancel", *jobs])
    return jobs
