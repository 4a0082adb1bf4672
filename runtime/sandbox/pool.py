"""A worker pool that runs many sandboxed executions concurrently (one process tree each)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from runtime.sandbox.core import CallTest, ExecResult, Limits, run_python


@dataclass(frozen=True)
class Job:
    """One execution: program text, standard input, limits, allow-listed packages, an optional judged test."""

    code: str
    stdin: str = ""
    limits: Limits = Limits()
    packages: tuple[str, ...] = ()
    test: CallTest | None = None


class SandboxPool:
    """Runs jobs on `workers` concurrent sandboxes (threads only wait; the work is in child processes).

    Args:
        workers: executions in flight at once; default: the number of CPUs.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")

    def run(self, jobs: Iterable[Job]) -> list[ExecResult]:
        """Results in the order of `jobs`."""
        return list(self._executor.map(
            lambda j: run_python(j.code, stdin=j.stdin, limits=j.limits, packages=j.packages, test=j.test), jobs))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
