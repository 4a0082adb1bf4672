"""Checkpoint retention (`keep = 3`, `keep = best(by math.gsm)`, `keep = best(2 by math.gsm)`).

A stage with a retention rule writes a Hugging Face snapshot of the policy at every save point and eval point
to ``stages/NAME/snapshots/step-<N>/`` (atomically, like ``final/``) and then prunes them: the last
``last`` snapshots stay, and with ``best`` the snapshot whose ``domain.eval`` score, recorded at its own
step, is the highest (the earliest on a tie). ``final/`` is always kept; ``ckpt/`` (the resumable state) is
separate and unaffected.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

SNAPSHOTS = "snapshots"
_NAME = re.compile(r"step-(\d+)$")


def snapshot_dir(stage_dir: Path, step: int) -> Path:
    return stage_dir / SNAPSHOTS / f"step-{step:06d}"


def snapshot_steps(stage_dir: Path) -> list[int]:
    """Steps of the complete snapshots under ``stage_dir`` (temporary names are not snapshots)."""
    root = stage_dir / SNAPSHOTS
    if not root.is_dir():
        return []
    found = (_NAME.match(p.name) for p in root.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def retained(steps: list[int], last: int, scores: Mapping[int, float] | None) -> set[int]:
    """The snapshot steps to keep: the ``last`` most recent, plus the best-scoring one when ``scores``
    (step -> score of the rule's eval) is given.

    >>> sorted(retained([10, 20, 30, 40], 2, {10: 0.5, 20: 0.9, 30: 0.1, 40: 0.2}))
    [20, 30, 40]
    """
    keep = set(sorted(steps)[-last:]) if last > 0 else set()
    scored = [s for s in steps if scores and s in scores]
    if scored:
        keep.add(max(scored, key=lambda s: (scores[s], -s)))
    return keep


def prune(stage_dir: Path, last: int, scores: Mapping[int, float] | None) -> list[int]:
    """Delete the snapshots :func:`retained` does not keep; returns the steps deleted."""
    steps = snapshot_steps(stage_dir)
    gone = [s for s in steps if s not in retained(steps, last, scores)]
    for s in gone:
        shutil.rmtree(snapshot_dir(stage_dir, s), ignore_errors=True)
    return gone
