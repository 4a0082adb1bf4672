"""When a stage writes its resumable checkpoint (weights, optimizer state, RNG: ``runtime.loop.save_checkpoint``).

A spec's ``save_every = N`` is kept exactly: a checkpoint every N steps. Left unset, ``Stage.checkpoint_every``
gives a tenth of the stage (at least every step), which on a small stage of slow steps can cost more than the
training: the quickstart's 135M-parameter checkpoint (model and AdamW state, 1.6 GB) took 4-37 s to write on a
2-core machine, after steps of 12-48 s, so about a fifth of a GRPO stage's wall time went to checkpoints
(``bench/results/quickstart-cpu.md``, session 12). The default cadence is therefore also bounded by cost: a
checkpoint point is skipped until the wall time since the last checkpoint (or the stage's start) is at least
``SAVE_COST_RATIO`` times what the last one took to write, which keeps checkpoints to about a tenth of the
stage's time; the first point of a stage always saves, to measure it. A crash then loses at most the larger of a
tenth of the stage and ``SAVE_COST_RATIO`` checkpoint-writes of time. Ctrl-C and SIGTERM checkpoint regardless.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Wall time between default-cadence checkpoints, in multiples of the last checkpoint's write time.
SAVE_COST_RATIO = 10.0


@dataclass
class SaveCadence:
    """The checkpoint points of one stage attempt.

    ``every`` is ``Stage.checkpoint_every(total)`` in steps (0: none inside the stage); ``bounded`` is true when
    the spec left ``save_every`` unset. Times are seconds of ``clock`` (``time.perf_counter`` by default).
    """

    every: int
    bounded: bool
    clock: Callable[[], float] = time.perf_counter
    since: float = field(init=False)
    last_write_s: float | None = None

    def __post_init__(self) -> None:
        self.since = self.clock()

    def point(self, done: int) -> bool:
        """Whether ``done`` finished steps is a checkpoint point of the step cadence (the same on every rank)."""
        return bool(self.every) and done % self.every == 0

    def due(self) -> bool:
        """At a point: whether to write now. Rank 0's answer is the one used (``runtime.loop``): clocks differ."""
        if not self.bounded or self.last_write_s is None:
            return True
        return self.clock() - self.since >= SAVE_COST_RATIO * self.last_write_s

    def write(self, save: Callable[[], None]) -> None:
        """Run ``save`` and remember how long it took; the interval to the next checkpoint starts after it."""
        start = self.clock()
        save()
        self.since = self.clock()
        self.last_write_s = self.since - start
