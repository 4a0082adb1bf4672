"""Process sandbox for model-written code: `run_python` for one execution, `SandboxPool` for many at once.

Guarantees and limits are in docs/sandbox.md; it is a process sandbox, not a VM.
"""

from __future__ import annotations

from runtime.sandbox.core import ExecResult, Limits, isolation, run_python
from runtime.sandbox.pool import Job, SandboxPool

__all__ = ["ExecResult", "Job", "Limits", "SandboxPool", "isolation", "run_python"]
