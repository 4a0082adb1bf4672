"""Graceful stop of a training stage: SIGTERM or SIGINT checkpoints the current step, then the stage exits.

SIGTERM is how Slurm preempts or requeues a job (and, with ``sbatch --signal=TERM@SECONDS``, how it
warns a job before its time limit); SIGINT is Ctrl-C. Either one, on any rank, only sets a flag: the stage
loop finishes the step in progress, every rank agrees at the step boundary (:func:`stop_agreed`, one
all-reduce, so all ranks write the same checkpoint even when the signal reached them at different steps),
the checkpoint of the finished steps is written atomically (``runtime.loop.save_checkpoint``), and the
process exits with ``128 + signal`` (143 for SIGTERM, 130 for SIGINT). The resumed stage starts at the
next step, so no step is done twice and none is lost.

A second signal does not force anything in the stage: whoever sent the first escalates. ``cascadec run``
(:func:`stop_child`) kills the stage at a second Ctrl-C, or 30 s after forwarding the first, and says which
steps will be redone; Slurm sends SIGKILL ``KillWait`` seconds after SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StageStopped(Exception):
    """Raised by the stage loop after it checkpointed ``step`` finished steps because of ``signum``."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved")

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by a signal: ``128 + signal number``."""
        return 128 + self.signum


class StopFlag:
    """The first stop signal received since :meth:`installed` began (0: none)."""

    def __init__(self) -> None:
        self.signum = 0

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signum = self.signum or signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        """Catch SIGTERM and SIGINT in this (main) thread for the duration of the block, then restore the
        previous handlers."""
        previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


#: The flag of this process; ``runtime.entry`` installs it around a training stage.
STOP = StopFlag()


def stop_agreed(acc: Any, flag: StopFlag = STOP) -> int:
    """The stop signal every rank acts on at this step boundary: the largest signal number any rank has
    received (0 when none has). A collective on more than one rank: every rank must call it at every step."""
    if acc.num_processes == 1:
        return flag.signum
    import torch

    box = torch.tensor([flag.signum], device=acc.device, dtype=torch.int64)
    torch.distributed.all_reduce(box, op=torch.distributed.ReduceOp.MAX)
    return int(box.item())


def stop_child(proc: subprocess.Popen, signum: int, grace_s: float, outcome: Callable[[bool], str],
               err: TextIO | None = None) -> None:
    """Ask a stage process (group) to checkpoint and exit, from the process that launched it.

    Sends ``signum`` to ``proc`` and waits up to ``grace_s`` seconds for its checkpoint. A second Ctrl-C
    (KeyboardInterrupt) while waiting, or the grace time running out, kills it at once. Either way ``err``
    (stderr by default) is told what happened through ``outcome(killed)``, which says where the stage resumes
    and, when killed, which finished steps will be redone.
    """
    err = err or sys.stderr
    print(f"{_name(signum)}: finishing the current step and checkpointing it; press Ctrl-C again to stop at "
          "once (the steps since the last checkpoint are then redone)", file=err, flush=True)
    killed = False
    try:
        proc.wait(timeout=grace_s)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        killed = True
        proc.kill()
        proc.wait()
    print(f"{'stopped at once' if killed else 'stopped'}: {outcome(killed)}", file=err, flush=True)


def _name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
