"""The runtime as the CLI sees it: the one module `cascadec.cli` imports from `runtime/`.

Every function returns an exit status or raises `UserError` (a message written for the user); the CLI maps
them to its own exit codes.
"""

from __future__ import annotations

from cascadec.contract.errors import UserError
from runtime.orchestrator import run
from runtime.report import report
from runtime.rewards.contracts import Problem, check_rewards
from runtime.sandbox import describe as sandbox_level
from runtime.status import status

__all__ = ["Problem", "UserError", "check_rewards", "report", "run", "sandbox_level", "status"]
