"""`math_verify(answer=...)`: 1.0 when HF math-verify judges the completion's answer equal to the gold one.

math-verify guards parsing and comparison with `signal.alarm` timeouts, which only work in a process's main
thread (peers.md pain point 6: veRL swallowed the resulting error and scored every MATH answer 0). This
reward therefore runs math-verify directly when called from the main thread and, from any other thread,
in a pool of worker processes, where each call runs in that worker's main thread with its timeouts intact.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from cascadec.contract.plan import Origin
from runtime.rewards.base import RewardError, check_batch, resolve, strip_thinking

_POOL: ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_POOL_WORKERS = 2


def _pool() -> ProcessPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            # spawn, not fork: the caller is multi-threaded (torch, rollout engines) and fork would copy
            # held locks into the worker.
            _POOL = ProcessPoolExecutor(_POOL_WORKERS, mp_context=multiprocessing.get_context("spawn"))
            atexit.register(_POOL.shutdown, cancel_futures=True)
        return _POOL


def _as_latex(gold: Any) -> str:
    text = str(gold).strip()
    return text if ("$" in text or "\\boxed" in text or "\\(" in text) else f"${text}$"


def score_one(gold: Any, completion: str, timeout_s: int) -> float:
    """1.0 if math-verify finds the gold answer in the completion's answer part, else 0.0.

    Must run in a main thread (math-verify's signal timeouts). The completion's text after `</think>` is
    parsed with math-verify's defaults (`\\boxed{}` first, then any LaTeX or plain expression).

    Raises:
        RewardError: the gold answer itself cannot be parsed (a data error, not a wrong completion).
    """
    from math_verify import parse, verify

    gold_parsed = parse(_as_latex(gold), parsing_timeout=timeout_s)
    if not gold_parsed:
        raise RewardError(f"math-verify cannot parse the gold answer {str(gold)!r}",
                          hint="store the gold answer as a number or a LaTeX expression")
    pred = parse(strip_thinking(completion), parsing_timeout=timeout_s)
    if not pred:
        return 0.0
    return 1.0 if verify(gold_parsed, pred, timeout_seconds=timeout_s) else 0.0


def _score_pair(args: tuple[Any, str, int]) -> float:
    return score_one(*args)


class MathVerifyReward:
    """Binary math reward (Nemotron-Cascade 1 §4.5: 1 iff the final answer is correct, else 0).

    Args:
        answer: the gold answer, usually `{"field": "answer"}`.
        timeout: seconds allowed for parsing and for comparing one answer (math-verify's own timeouts).
    """

    def __init__(self, answer: Any = None, *, timeout: float = 5, origin: Origin | None = None) -> None:
        self.answer = {"field": "answer"} if answer is None else answer
        self.timeout = max(1, round(timeout))
        self.origin = origin

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        check_batch(samples, completions)
        jobs = [(resolve(self.answer, s), c, self.timeout) for s, c in zip(samples, completions)]
        if threading.current_thread() is threading.main_thread():
            return [_score_pair(j) for j in jobs]
        return list(_pool().map(_score_pair, jobs))
