"""The runtime as the CLI sees it: the one module `cascadec.cli` imports from `runtime/`.

Every function returns an exit status or raises `UserError` (a message written for the user); the CLI maps
them to its own exit codes.
"""

from __future__ import annotations

from pathlib import Path

from cascadec.contract.errors import UserError
from runtime.orchestrator import run
from runtime.report import report
from runtime.rewards.contracts import Problem, check_rewards
from runtime.sandbox import describe as sandbox_level
from runtime.slurm import slurmcli
from runtime.slurm.submit import SlurmOptions, submit
from runtime.state import RunDir
from runtime.status import status

__all__ = ["Problem", "SlurmOptions", "UserError", "cancel", "check_rewards", "report", "run", "sandbox_level",
           "status", "submit"]


def cancel(run_dir: Path | str) -> list[str]:
    """Cancel the queued and running Slurm jobs of a run directory; returns their ids (none: an empty list).

    Raises `UserError` when a Slurm tool is missing or refuses.
    """
    return slurmcli.cancel(RunDir(run_dir))
