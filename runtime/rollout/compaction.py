"""Batch compaction for the fast rollout engine: rows that have finished stop costing decode work.

A static-shape decode step costs the same for a finished row as for a live one, and at long lengths that
cost is mostly reading the row's KV cache (SmolLM2-135M shape, 4,096 slots: 94 MB per row per token). So a
rollout whose answers end at different lengths would pay for the longest one on every row. Every time the
engine checks for finished rows (``SYNC_EVERY`` steps), :func:`compact_size` says whether the live rows fit
a batch of half the size or less; if so :class:`LiveRows` moves them (their cache rows and decode state) to
a decoder of that size, whose graph is captured once and cached like any other shape. Sizes are
``ceil(B / 2^k)``, so a stage sees at most ``log2 B`` extra shapes.
"""

from __future__ import annotations

import torch

from runtime.rollout.decoder import StaticDecoder
from runtime.rollout.graph_step import StepRunner

# Rows left to decode below which compaction is not worth a cache copy (and maybe a graph capture).
COMPACT_MIN_STEPS = 64


def compact_size(live: int, batch: int) -> int:
    """The smallest of ``batch, ceil(batch / 2), ceil(batch / 4), ...`` that holds ``live`` rows.

    >>> compact_size(20, 128), compact_size(64, 128), compact_size(65, 128), compact_size(0, 6)
    (32, 64, 128, 1)
    """
    size = batch
    while size > 1 and -(-size // 2) >= live:
        size = -(-size // 2)
    return size


class LiveRows:
    """The decoder and step runner a rollout is on, and the output row each of their rows belongs to.

    ``rows[i]`` is the output row of batch row ``i``; ``total`` (one past the last output row) marks a
    row that only pads a compacted batch. Outputs are gathered into ``[total + 1, T_max]`` buffers at
    each move and at the end.
    """

    def __init__(self, decoder: StaticDecoder, runner: StepRunner, total: int):
        self.decoder, self.runner, self.total = decoder, runner, total
        self.rows = torch.arange(total, device=decoder.device)
        self.moves = 0
        self._tokens: torch.Tensor | None = None
        self._logprobs: torch.Tensor | None = None

    def _flush(self) -> None:
        state = self.runner.state
        if self._tokens is None:
            self._tokens = torch.full((self.total + 1, state.max_len), state.pad_id, dtype=torch.long,
                                      device=state.tokens.device)
            self._logprobs = torch.zeros(self.total + 1, state.max_len, device=state.tokens.device)
        self._tokens.index_copy_(0, self.rows, state.tokens)
        self._logprobs.index_copy_(0, self.rows, state.logprobs)

    def move(self, live: torch.Tensor, decoder: StaticDecoder, runner: StepRunner) -> None:
        """Continue the rows ``live`` (indices into the current batch, at most ``decoder.batch``) on
        ``decoder`` / ``runner``; the remaining rows of the new batch repeat ``live[0]`` as padding."""
        self._flush()
        fill = decoder.batch - live.numel()
        rows = torch.cat([live, live[:1].expand(fill)])
        padding = torch.arange(decoder.batch, device=live.device) >= live.numel()
        decoder.copy_rows(self.decoder, rows)
        runner.state.take(self.runner.state, rows, padding)
        self.rows = self.rows.index_select(0, rows).masked_fill(padding, self.total)
        self.decoder, self.runner = decoder, runner
        self.moves += 1

    def outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, logprobs)`` ``[total, T_max]`` of every output row, in output order."""
        state = self.runner.state
        if self._tokens is None:
            return state.tokens, state.logprobs
        self._flush()
        return self._tokens[:self.total], self._logprobs[:self.total]
