"""Rank-0 progress display of a stage: step, loss, reward, tokens/s and ETA.

On a terminal it is a rich progress bar; otherwise (logs, CI, a captured subprocess) one plain line per
step, so a log file shows the same facts. Output goes through :class:`ReaderSafeStream`, so a reader that
goes away (``cascadec run spec | head -4``) ends the printing, never the training.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def format_metrics(metrics: dict[str, Any]) -> str:
    """``loss=0.123 reward=0.50 tok/s=1234`` from a step's metrics (only the keys present)."""
    parts = []
    for key, label, fmt in (
        ("loss", "loss", ".4g"),
        ("reward_mean", "reward", ".3f"),
        ("kl", "kl", ".3g"),
        ("response_len", "len", ".1f"),
        ("tokens_per_s", "tok/s", ".0f"),
    ):
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{label}={value:{fmt}}")
    return " ".join(parts)


class ReaderSafeStream:
    """A text stream (``sys.stdout``) whose reader may go away: the first ``BrokenPipeError`` points the
    stream's file descriptor at ``/dev/null`` and later writes are dropped, so printing stops but the
    program (a training stage, the orchestrator) goes on, and the interpreter's flush at exit cannot fail
    either. Everything else (``isatty``, ``fileno``, ``encoding``, ...) is the wrapped stream's.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.reader_gone = True
        # A stream without a descriptor (io.StringIO) has no pipe to replace.
        with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._stream.fileno())
            finally:
                os.close(null)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def reader_safe(stream: TextIO) -> TextIO:
    """``stream`` wrapped in :class:`ReaderSafeStream` (once)."""
    return stream if isinstance(stream, ReaderSafeStream) else ReaderSafeStream(stream)  # type: ignore[return-value]


class StageProgress:
    """Progress of one stage from ``start`` to ``total`` steps; a no-op when ``enabled`` is false."""

    def __init__(self, stage: str, start: int, total: int, *, enabled: bool, stream=None) -> None:
        self.stage, self.start, self.total, self.enabled = stage, start, total, enabled
        self.console = Console(file=reader_safe(stream or sys.stdout))
        self.t0 = time.monotonic()
        self.bar: Progress | None = None
        if enabled and self.console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.task = self.bar.add_task(stage, total=total, completed=start, info="")
            self.bar.start()

    def eta_s(self, done: int) -> float | None:
        """Seconds left, from the mean time of the steps run in this process."""
        ran = done - self.start
        if ran <= 0:
            return None
        return (time.monotonic() - self.t0) / ran * (self.total - done)

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        done = step + 1
        info = format_metrics(metrics)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, info=info)
            return
        eta = self.eta_s(done)
        eta_text = f" eta={eta:.0f}s" if eta is not None else ""
        print(f"[{self.stage}] step {done}/{self.total} {info}{eta_text}", file=self.console.file, flush=True)

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            # Literal text: as markup, the `[stage]` tag of an eval line would vanish.
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.console.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
