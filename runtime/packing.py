"""Micro-batches of rollouts for the RL update: padded rows, or packed rows under a token budget.

Padded: ``micro_batch`` rollouts per micro-batch, each its own row (prompt + completion), right-padded to the
longest; at long lengths most of the compute goes to padding. Packed (``max_tokens``): rollouts are placed,
longest first, into the first row with room (first-fit decreasing, as NeMo-RL's sequence packing and
veRL's dynamic batch size do), one row of at most ``max_tokens`` tokens per micro-batch; positions restart
at 0 for every rollout and no 2-D attention mask is passed, so transformers builds a block-diagonal causal
mask from ``position_ids`` (``masking_utils.find_packed_sequence_indices``) and no rollout sees another.

Either way each completion token carries its rollout index and its offset inside the completion, so
per-rollout quantities (advantages, engine log-probs, old and reference log-probs) are laid out by
:meth:`MicroBatch.gather` identically in both layouts, and the loss of a token does not depend on its row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from runtime.logprobs import pad_right


@dataclass
class MicroBatch:
    """One forward/backward's tensors, all ``[R, T]``.

    ``completion`` is 1 on completion tokens; ``rollout``/``offset`` give, on those tokens, the rollout's
    index in the step's batch and the token's index inside its completion (-1 / 0 elsewhere).
    ``attention_mask`` is None and ``position_ids`` set for packed rows (and the reverse for padded ones).
    ``rollouts`` lists the batch indices of the rollouts it holds.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor | None
    completion: torch.Tensor
    rollout: torch.Tensor
    offset: torch.Tensor
    rollouts: list[int]

    def to(self, device: torch.device) -> "MicroBatch":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return MicroBatch(move(self.input_ids), move(self.attention_mask), move(self.position_ids),
                          move(self.completion), move(self.rollout), move(self.offset), self.rollouts)

    def gather(self, per_rollout: torch.Tensor) -> torch.Tensor:
        """``[N]`` (one value per rollout) or ``[N, L]`` (per completion token, right-padded) -> ``[R, T]``
        values at this micro-batch's completion tokens, 0 elsewhere."""
        on = self.rollout >= 0
        idx = self.rollout.clamp(min=0)
        per_rollout = per_rollout.to(self.rollout.device)
        values = per_rollout[idx] if per_rollout.ndim == 1 else per_rollout[idx, self.offset]
        return torch.where(on, values, torch.zeros_like(values))


def _row_parts(prompt: list[int], completion: list[int], i: int) -> tuple[list[int], list[int], list[int], list[int]]:
    n_p, n_c = len(prompt), len(completion)
    return (prompt + completion, [0] * n_p + [1] * n_c, [-1] * n_p + [i] * n_c, [0] * n_p + list(range(n_c)))


def padded_micro_batches(prompt_ids: list[list[int]], completion_ids: list[list[int]], index: list[int],
                         pad_id: int, micro_batch: int) -> list[MicroBatch]:
    """``micro_batch`` rollouts of ``index`` per micro-batch, one right-padded row each."""
    out = []
    for start in range(0, len(index), micro_batch):
        rows = index[start:start + micro_batch]
        parts = [_row_parts(prompt_ids[i], completion_ids[i], i) for i in rows]
        ids = pad_right([p[0] for p in parts], pad_id)
        out.append(MicroBatch(
            ids, pad_right([[1] * len(p[0]) for p in parts], 0), None, pad_right([p[1] for p in parts], 0),
            pad_right([p[2] for p in parts], -1), pad_right([p[3] for p in parts], 0), list(rows)))
    return out


def pack_rollouts(lengths: dict[int, int], max_tokens: int) -> list[list[int]]:
    """First-fit decreasing: rollout indices grouped into bins of at most ``max_tokens`` tokens (a rollout
    longer than the budget gets a bin of its own). Ties keep index order, so the packing is deterministic.

    >>> pack_rollouts({0: 5, 1: 3, 2: 4, 3: 2}, 8)
    [[0, 1], [2, 3]]
    """
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(lengths, key=lambda k: (-lengths[k], k)):
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(max_tokens - lengths[i])
    return bins


def packed_micro_batches(prompt_ids: list[list[int]], completion_ids: list[list[int]], index: list[int],
                         pad_id: int, max_tokens: int) -> list[MicroBatch]:
    """The rollouts of ``index`` packed into rows of at most ``max_tokens`` tokens, one row per micro-batch."""
    lengths = {i: len(prompt_ids[i]) + len(completion_ids[i]) for i in index}
    out = []
    for rows in pack_rollouts(lengths, max_tokens):
        parts = [_row_parts(prompt_ids[i], completion_ids[i], i) for i in rows]
        ids = [t for p in parts for t in p[0]]
        positions = [j for p in parts for j in range(len(p[0]))]
        out.append(MicroBatch(
            torch.tensor([ids]), None, torch.tensor([positions]),
            torch.tensor([[c for p in parts for c in p[1]]]), torch.tensor([[r for p in parts for r in p[2]]]),
            torch.tensor([[o for p in parts for o in p[3]]]), list(rows)))
    return out


def micro_batches(prompt_ids: list[list[int]], completion_ids: list[list[int]], index: list[int], pad_id: int, *,
                  micro_batch: int, max_tokens: int | None) -> list[MicroBatch]:
    """Packed micro-batches when ``max_tokens`` is set, padded ones of ``micro_batch`` rollouts otherwise."""
    if not index:
        return []
    if max_tokens is not None:
        return packed_micro_batches(prompt_ids, completion_ids, index, pad_id, max_tokens)
    return padded_micro_batches(prompt_ids, completion_ids, index, pad_id, micro_batch)
