"""Shared pieces of the multi-process CPU tests: gloo ranks started with ``torch.multiprocessing.spawn``."""

from __future__ import annotations

import atexit
import os
import socket

import torch


def free_port() -> int:
    """A free TCP port on localhost for the ranks' rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_as_rank(rank: int, port: int, world: int = 2) -> None:
    """Set the environment torchrun gives rank ``rank`` of ``world`` CPU processes; one thread each, so that
    the ranks share the machine's cores instead of oversubscribing them. The process leaves the group at exit."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    atexit.register(_leave_group)


def _leave_group() -> None:
    # A gloo group still alive at interpreter exit can abort the process ("terminate called without an active
    # exception") while its threads are torn down, failing a test whose ranks all finished their work.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def letters_reward(samples, completions) -> list[float]:
    """Letters per completion: spread inside every group, so every GRPO row has a non-zero advantage."""
    return [float(sum(c.isalpha() for c in text)) for text in completions]
