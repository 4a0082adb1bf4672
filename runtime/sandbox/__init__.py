"""Process sandbox for model-written code: `run_python` for one execution, `SandboxPool` for many at once.

Guarantees and limits are in docs/sandbox.md; it is a process sandbox, not a VM.
"""

from __future__ import annotations

from runtime.sandbox.core import CallTest, ExecResult, Limits, run_python
from runtime.sandbox.fsplan import UnknownPackage
from runtime.sandbox.levels import SandboxUnavailable, describe, isolation, require
from runtime.sandbox.pool import Job, SandboxPool

__all__ = ["CallTest", "ExecResult", "Job", "Limits", "SandboxPool", "SandboxUnavailable", "UnknownPackage",
           "describe", "isolation", "require", "run_python"]
