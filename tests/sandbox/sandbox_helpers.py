"""Helpers of the sandbox tests."""

from __future__ import annotations

import os

from runtime.sandbox import client


def own_processes() -> list[int]:
    """Live descendants of this test process, except the sandbox zygote, which outlives executions by design."""
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
