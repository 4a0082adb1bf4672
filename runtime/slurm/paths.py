"""Shared-filesystem checks for a Slurm run.

Every node of every job reads the build directory (plan.json, launch.sh) and reads and writes the run
directory (checkpoints, state.json, evals.jsonl), and the stage reads its data and base model; so all of them
must be on a filesystem that every node mounts at the same path. Which filesystems are shared cannot be
known from the login node; what can be caught is a path on a filesystem that is node-local by nature (tmpfs,
ramfs, ``/tmp``, ``/dev/shm``): those get a warning, since a one-node cluster can still use them.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Filesystem types that live in one machine's memory.
LOCAL_TYPES = {"tmpfs", "ramfs", "devtmpfs"}
#: Directories that are node-local by convention on clusters.
LOCAL_DIRS = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path("/run"))


def mount_type(path: Path, mounts: str | None = None) -> str:
    """The filesystem type of the mount that holds ``path`` (the longest mount point above it)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    best, kind = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (str(path) == point or str(path).startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def node_local_reason(path: Path, mounts: str | None = None) -> str | None:
    """Why ``path`` is probably visible on this node only, or None."""
    path = Path(os.path.abspath(path))
    kind = mount_type(path, mounts)
    if kind in LOCAL_TYPES:
        return f"it is on a {kind} filesystem (in this machine's memory)"
    for local in LOCAL_DIRS:
        if path == local or local in path.parents:
            return f"it is under {local}, which is node-local on most clusters"
    return None


def shared_path_warnings(paths: dict[str, Path], mounts: str | None = None) -> list[str]:
    """One warning per path (``{what: path}``) that other nodes probably cannot see."""
    warnings = []
    for what, path in paths.items():
        reason = node_local_reason(path, mounts)
        if reason:
            warnings.append(f"the {what} `{path}` may not be visible to the compute nodes: {reason}\n"
                            "help: put it on a filesystem every node mounts (home, project or scratch space), "
                            "or ignore this on a one-node cluster")
    return warnings
