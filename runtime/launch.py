"""The command and environment that run one stage's process group.

``nproc > 1`` (or several nodes) goes through ``python -m torch.distributed.run`` (torchrun: one process
per rank, rendezvous, and all ranks stopped when one fails); a single CPU process runs the entry point
directly, which saves torchrun's start-up and gives the same behaviour.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cascadec.contract.plan import Stage

ENTRY_MODULE = "runtime.entry"


def repo_root() -> Path:
    """The directory that holds the ``runtime`` package (put on PYTHONPATH for the child processes)."""
    return Path(__file__).resolve().parent.parent


def stage_command(plan_json: Path, stage: str, run_dir: Path, *, nproc: int, nnodes: int = 1) -> list[str]:
    """argv that runs ``stage`` (or ``"base"``) with ``nproc`` processes per node."""
    entry = ["--plan", str(plan_json), "--stage", stage, "--run-dir", str(run_dir)]
    if nproc == 1 and nnodes == 1:
        return [sys.executable, "-m", ENTRY_MODULE, *entry]
    if nnodes == 1:
        rdzv = ["--standalone"]
    else:
        # Multi-node: the sbatch script of the build exports these for every node.
        endpoint = f"{os.environ.get('MASTER_ADDR', 'localhost')}:{os.environ.get('MASTER_PORT', '29500')}"
        rdzv = ["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint]
    return [sys.executable, "-m", "torch.distributed.run", *rdzv, "--nproc-per-node", str(nproc),
            "-m", ENTRY_MODULE, *entry]


def stage_env(nproc: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child environment: the repo on PYTHONPATH and the CPU cores shared between local ranks."""
    env = dict(os.environ)
    root = str(repo_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, nproc))))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def world_size(stage: Stage, nproc: int | None) -> int:
    """Processes per node: the caller's override, else the plan's ``resources.nproc_per_node``."""
    return nproc if nproc is not None else stage.resources.nproc_per_node
