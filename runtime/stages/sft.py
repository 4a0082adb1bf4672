"""One SFT step: chat-rendered conversations, loss on every assistant turn's tokens only, packing.

A chat-list sample trains on every assistant turn of its conversation (``runtime.chat.render_sft_chat``).
Final completion of a sample: its ``completion`` column (``Sample.meta["completion"]``, e.g. a jsonl source with
``completion = "response"``); when a source has none (reasoning-gym generators, prompt/answer jsonl), the
answer formatted as ``Answer: <answer>`` (:data:`ANSWER_FORMAT`), a form the reward library's
``extract_final_answer`` reads for every verifier (gym, math_verify, exact), so SFT teaches exactly the
format GRPO is rewarded for.

Packing: examples are placed in order into rows of at most ``max_seq`` tokens (first fit of the current
row); positions restart at 0 for each example and no 2-D attention mask is passed, from which transformers
builds a block-diagonal causal mask (``masking_utils.find_packed_sequence_indices``), so an example never
attends to its neighbours. The loss is the mean negative log-likelihood over all assistant tokens of the
step (every rank, every micro-batch).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch

from cascadec.contract.errors import UserError
from runtime.chat import SFTExample, conversation, render_sft_chat
from runtime.rows import RowError, chat_list
from runtime.logprobs import pad_right, pad_token_id, token_logprobs
from runtime.stages import backward_passes, optimizer_step

if TYPE_CHECKING:
    from runtime.context import StageContext
    from runtime.data import Sample

ANSWER_FORMAT = "Answer: {answer}"


class SFTDataError(UserError, ValueError):
    """A sample has nothing to train on."""


def sft_completion(sample: Sample) -> str | list[dict[str, str]] | None:
    """The final assistant turn to add for ``sample`` (see the module docstring): text, or the turns of a
    completion column in chat format (``[{"role": "assistant", "content": ...}]``, as prime-rl and TRL
    prompt/completion datasets store it); None when its chat list already ends with an assistant turn and it
    has no completion column.

    Raises:
        SFTDataError: the sample has no ``completion`` column, no answer and no assistant turn, or a chat
            completion that is malformed.
    """
    completion = sample.meta.get("completion")
    if completion == []:  # an empty chat completion holds nothing to train on
        completion = None
    if isinstance(completion, list):
        try:
            return [dict(m) for m in chat_list(completion, f"SFT sample `{sample.id}`", need_user=False)]
        except RowError as e:
            raise SFTDataError(str(e)) from None
    if completion is not None:
        return str(completion)
    if sample.messages and sample.messages[-1]["role"] == "assistant":
        return None
    if sample.answer is not None:
        return ANSWER_FORMAT.format(answer=sample.answer)
    if sample.messages and any(m["role"] == "assistant" for m in sample.messages):
        return None
    raise SFTDataError(
        f"SFT sample `{sample.id}` has no `completion` column, no answer and no assistant turn to train on\n"
        f'help: map a completion column in the domain\'s data, e.g. jsonl("...", completion = "response")'
    )


def sft_turns(sample: Sample, system: str | None) -> list[dict[str, str]]:
    """The conversation SFT trains on: the sample's turns (a chat list: every turn, system included; a text
    prompt: one user turn) ending with an assistant turn, ``sft_completion`` appended when there is one.
    A chat list whose assistant turns are followed by user turns without a completion is cut after its last
    assistant turn."""
    turns = conversation(sample.prompt, sample.messages, system)
    completion = sft_completion(sample)
    if isinstance(completion, list):
        return turns + completion
    if completion is not None:
        return turns + [{"role": "assistant", "content": completion}]
    while turns[-1]["role"] != "assistant":
        turns.pop()
    return turns


def pack(examples: list[SFTExample], max_seq: int) -> list[list[SFTExample]]:
    """Group examples, in order, into rows of at most ``max_seq`` tokens (a new row when one does not fit)."""
    rows: list[list[SFTExample]] = []
    used = max_seq
    for ex in examples:
        if used + len(ex.input_ids) > max_seq:
            rows.append([])
            used = 0
        rows[-1].append(ex)
        used += len(ex.input_ids)
    return rows


def packed_tensors(rows: list[list[SFTExample]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, loss_mask, position_ids)``, each ``[R, T]``, for packed rows.

    Positions restart at 0 for each example and for the right padding, which therefore forms its own
    (masked-out) block.
    """
    ids, mask, pos = [], [], []
    for row in rows:
        ids.append([t for ex in row for t in ex.input_ids])
        mask.append([m for ex in row for m in ex.loss_mask])
        pos.append([i for ex in row for i in range(len(ex.input_ids))])
    width = max(len(r) for r in ids)
    pos = [p + list(range(width - len(p))) for p in pos]
    return pad_right(ids, pad_id), pad_right(mask, 0), torch.tensor(pos, dtype=torch.long)


class SFTTrainer:
    """The ``sft`` stage's step (Trainer protocol in docs/ARCHITECTURE.md)."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.params = ctx.stage.params
        self.pad_id = pad_token_id(ctx.tokenizer)

    def state_dict(self) -> dict:
        """No state beyond the model and optimizer."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore (see ``state_dict``)."""

    def _examples(self, batch: list[Sample]) -> list[SFTExample]:
        ctx = self.ctx
        out = []
        for s in batch:
            chat = ctx.chat(s.domain)
            out.append(render_sft_chat(ctx.tokenizer, chat, ctx.stage.mode, sft_turns(s, chat.system),
                                       max_seq=self.params.max_seq))
        return out

    def _micro_batches(self, examples: list[SFTExample]) -> list[dict[str, torch.Tensor | None]]:
        p = self.params
        if p.packing:
            rows = pack(examples, p.max_seq)
            out = []
            for i in range(0, len(rows), p.micro_batch):
                ids, mask, pos = packed_tensors(rows[i:i + p.micro_batch], self.pad_id)
                out.append({"input_ids": ids, "attention_mask": None, "completion_mask": mask, "position_ids": pos})
            return out
        out = []
        for i in range(0, len(examples), p.micro_batch):
            chunk = examples[i:i + p.micro_batch]
            out.append({
                "input_ids": pad_right([e.input_ids for e in chunk], self.pad_id),
                "attention_mask": pad_right([[1] * len(e.input_ids) for e in chunk], 0),
                "completion_mask": pad_right([e.loss_mask for e in chunk], 0),
                "position_ids": None,
            })
        return out

    def step(self, step: int, batch: list[Sample]) -> dict[str, float]:
        """One optimizer step on ``batch`` (``batch_size`` samples, this rank's share).

        Returns metrics: loss (mean NLL per assistant token), tokens (assistant tokens), rows, fill (real
        tokens / row slots), truncated_frac, tokens_per_s (all tokens per second), grad_norm, lr, train_s.

        Raises:
            SFTDataError, runtime.chat.ChatError: a sample cannot be rendered.
        """
        ctx, p = self.ctx, self.params
        acc = ctx.accelerator
        start = time.perf_counter()
        lr = float(ctx.optimizer.param_groups[0]["lr"])
        examples = self._examples(batch)
        micro = self._micro_batches(examples)
        local_tokens = float(sum(sum(e.loss_mask) for e in examples))
        total = max(float(acc.reduce(torch.tensor(local_tokens, device=ctx.device), reduction="sum")), 1.0)
        passes = backward_passes(ctx, len(micro))
        nll, slots = 0.0, 0
        for n in range(passes):
            real = n < len(micro)
            mb = micro[n] if real else micro[0]
            tensors = {k: (v.to(ctx.device) if v is not None else None) for k, v in mb.items()}
            mask = tensors["completion_mask"] if real else torch.zeros_like(tensors["completion_mask"])
            with acc.no_sync(ctx.policy) if n < passes - 1 else nullcontext():
                lp = token_logprobs(ctx.policy, tensors["input_ids"], tensors["attention_mask"],
                                    tensors["completion_mask"], position_ids=tensors["position_ids"],
                                    compute_dtype=ctx.dtype).logprobs
                loss = -(lp * mask).sum() / total
                # DDP averages gradients over ranks; the loss is already a share of the global mean.
                acc.backward(loss * acc.num_processes)
            if real:
                nll += float(loss.detach()) * acc.num_processes
                slots += mb["input_ids"].numel()
        grad_norm = optimizer_step(ctx, p.optim.grad_clip)
        # Evals sample with the engine; one that keeps its own copy of the weights (bf16 fast engine, vLLM)
        # must see the updated policy.
        ctx.engine.sync_weights(ctx.policy)
        elapsed = time.perf_counter() - start
        real_tokens = sum(len(e.input_ids) for e in examples)
        return {
            "loss": nll, "tokens": local_tokens, "rows": float(sum(len(m["input_ids"]) for m in micro)),
            "fill": real_tokens / max(slots, 1), "truncated_frac": sum(e.truncated for e in examples) / len(examples),
            "tokens_per_s": real_tokens / max(elapsed, 1e-9), "grad_norm": grad_norm, "lr": lr, "train_s": elapsed,
        }
