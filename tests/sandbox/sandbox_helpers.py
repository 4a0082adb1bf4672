"""Helpers of the sandbox tests."""

from __future__ import annotations

import os
import time

from runtime.sandbox import client


_BEFORE: set[int] = set()


def mark_baseline() -> None:
    """Record the descendants alive now (say the math reward's worker pool, started by an earlier test), so
    that `own_processes` counts only what the current test started."""
    _BEFORE.clear()
    _BEFORE.update(_descendants())


def own_processes(settle_s: float = 10.0) -> list[int]:
    """Live descendants of this test process that the current test started, except the sandbox zygote, which
    outlives executions by design.

    A namespace's pid 1 killed at the time limit is re-parented to this process (the subreaper) and may take
    a moment to finish dying; only what is still alive after `settle_s` counts."""
    end = time.monotonic() + settle_s
    while (found := _new_descendants()) and time.monotonic() < end:
        time.sleep(0.05)
    return found


def _new_descendants() -> list[int]:
    return [pid for pid in _descendants() if pid not in _BEFORE]


def _descendants() -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    zygote = client.ZYGOTE._proc.pid if client.ZYGOTE._proc is not None else None
    found, todo = [], [os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), []):
            if pid != zygote:
                found.append(pid)
                todo.append(pid)
    return found
