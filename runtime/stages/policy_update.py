"""The RL update of a ``grpo`` step: optional scoring pass, then ``updates_per_step`` optimizer steps.

With the defaults (one update, no IS correction, KL in the loss) this is the strict on-policy update of the
Cascade papers: one optimizer step, ratio 1, no extra forward pass. Otherwise:

- a no-grad scoring pass first computes ``log pi_old`` (the weights that sampled, as the trainer sees them)
  when a later mini-batch needs the ratio ``pi_theta / pi_old`` or the IS correction needs ``pi_old / pi_inf``,
  and ``log pi_ref`` when the KL goes into the reward (PPO's "recompute old log-probs", veRL's
  ``compute_log_prob``);
- the kept rollouts are split, in order, into ``updates_per_step`` mini-batches, each one optimizer step
  (DAPO: 16 mini-batches per rollout batch; ProRL: 8). The LR schedule advances once per rollout step.

Each mini-batch is normalised over its own tokens or rollouts on all ranks (:func:`mini_batch_normaliser`), and
every rank runs the same number of backward passes (DDP all-reduces in each synchronised one).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from runtime.logprobs import TokenLogprobs, pad_right, token_logprobs
from runtime.losses.policy import aggregation_weights, is_correction, policy_loss
from runtime.packing import MicroBatch, micro_batches
from runtime.rollout.base import RolloutBatch
from runtime.stages import backward_passes, optimizer_step

if TYPE_CHECKING:
    from torch import nn

    from runtime.context import StageContext


@dataclass(frozen=True)
class UpdateOptions:
    """The update's settings (the ``grpo`` stage's keys; docs/language.md)."""

    updates_per_step: int = 1
    micro_batch: int = 1
    max_tokens: int | None = None
    aggregation: str = "token_mean"
    clip_low: float | None = None
    clip_high: float | None = None
    dual_clip: float | None = None
    is_correction: str = "none"
    is_band: tuple[float, float] = (0.5, 2.0)
    kl: float = 0.0
    kl_estimator: str = "k3"
    kl_in_reward: bool = False
    entropy: float = 0.0
    temperature: float = 1.0
    grad_clip: float = 1.0

    @property
    def needs_old(self) -> bool:
        """A scoring pass is needed for ``log pi_old`` when there is more than one update: a later mini-batch
        trains weights that no longer sampled. With one update the first forward is at the sampling weights."""
        return self.updates_per_step > 1


def per_token(rows: list[list[float]]) -> torch.Tensor:
    """Ragged per-completion-token values -> ``[N, L]`` right-padded with 0 (an empty row stays all 0)."""
    return pad_right([r or [0.0] for r in rows], 0.0, dtype=torch.float32)


def split(items: list[int], parts: int) -> list[list[int]]:
    """``items`` in order into ``parts`` contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (1 if k < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def forward(model: nn.Module, mb: MicroBatch, temperature: float, *, with_entropy: bool = False,
            dtype: torch.dtype | None = None) -> TokenLogprobs:
    """``token_logprobs`` of one micro-batch (padded or packed)."""
    return token_logprobs(model, mb.input_ids, mb.attention_mask, mb.completion, temperature=temperature,
                          with_entropy=with_entropy, position_ids=mb.position_ids, compute_dtype=dtype)


@torch.no_grad()
def score(model: nn.Module, batches: list[MicroBatch], n: int, width: int, temperature: float, device: torch.device,
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """Log-probs ``[N, width]`` of every completion token of the rollouts in ``batches`` under ``model``."""
    out = torch.zeros(n, width, dtype=torch.float32)
    for mb in batches:
        mb = mb.to(device)
        lp = forward(model, mb, temperature, dtype=dtype).logprobs.float().cpu()
        on = (mb.rollout >= 0).cpu()
        out[mb.rollout.cpu()[on], mb.offset.cpu()[on]] = lp[on]
    return out


def mini_batch_normaliser(ctx: StageContext, lengths: list[int], aggregation: str) -> float:
    """The mini-batch's token count (``token_mean``) or count of non-empty rollouts, summed over ranks."""
    local = float(sum(lengths) if aggregation == "token_mean" else sum(n > 0 for n in lengths))
    total = ctx.accelerator.reduce(torch.tensor(local, device=ctx.device), reduction="sum")
    return max(float(total), 1.0)


class PolicyUpdate:
    """One step's update over a rollout batch (see the module docstring)."""

    def __init__(self, ctx: StageContext, opts: UpdateOptions, pad_id: int, reference: nn.Module | None = None) -> None:
        self.ctx, self.opts, self.pad_id, self.reference = ctx, opts, pad_id, reference

    def layout(self, rollouts: RolloutBatch, index: list[int]) -> list[MicroBatch]:
        o = self.opts
        return micro_batches(rollouts.prompt_ids, rollouts.completion_ids, index, self.pad_id,
                             micro_batch=o.micro_batch, max_tokens=o.max_tokens)

    def scores(self, rollouts: RolloutBatch, index: list[int]) -> dict[str, torch.Tensor]:
        """``{"old": [N, L]}``, with ``"ref": [N, L]`` when the KL goes into the reward, or ``{}`` when the
        update needs no scoring pass (see the module docstring)."""
        o, ctx = self.opts, self.ctx
        want_ref = self.reference is not None and o.kl_in_reward
        if not (o.needs_old or want_ref):
            return {}
        batches = self.layout(rollouts, index)
        width = max([len(c) for c in rollouts.completion_ids] + [1])
        out = {"old": score(ctx.policy, batches, len(rollouts), width, o.temperature, ctx.device, ctx.dtype)}
        if want_ref:
            out["ref"] = score(self.reference, batches, len(rollouts), width, o.temperature, ctx.device, ctx.dtype)
        return out

    def run(self, rollouts: RolloutBatch, adv: torch.Tensor, keep: torch.Tensor,
            scores: dict[str, torch.Tensor]) -> dict[str, float]:
        """``updates_per_step`` optimizer steps on the kept rollouts; returns loss, kl, entropy, clip_frac,
        is_masked_frac, logp_mismatch, grad_norm (the last update's), lr."""
        o, ctx = self.opts, self.ctx
        kept = keep.nonzero().flatten().tolist()
        inf = per_token(rollouts.completion_logprobs)
        totals = dict.fromkeys(("loss", "kl_sum", "entropy_sum", "tokens", "mismatch_sum", "clipped_sum",
                                "outside_sum"), 0.0)
        lr = float(ctx.optimizer.param_groups[0]["lr"])
        grad_norm = 0.0
        lengths = torch.tensor([len(c) for c in rollouts.completion_ids], dtype=torch.float32)
        for k, part in enumerate(split(kept, o.updates_per_step)):
            norm = mini_batch_normaliser(ctx, [len(rollouts.completion_ids[i]) for i in part], o.aggregation)
            self._mini_batch(self.layout(rollouts, part), adv, lengths, inf, scores, norm, totals)
            grad_norm = optimizer_step(ctx, o.grad_clip, advance_schedule=k == o.updates_per_step - 1)
        tokens = max(totals["tokens"], 1.0)
        return {"loss": totals["loss"] / o.updates_per_step, "kl": totals["kl_sum"] / tokens,
                "entropy": totals["entropy_sum"] / tokens, "clip_frac": totals["clipped_sum"] / tokens,
                "is_masked_frac": totals["outside_sum"] / tokens, "logp_mismatch": totals["mismatch_sum"] / tokens,
                "grad_norm": grad_norm, "lr": lr}

    def skip(self) -> dict[str, float]:
        """No update this step (dynamic sampling found no signal): the LR schedule still advances, so step
        ``s`` always trains at ``lr_at(s)``."""
        lr = float(self.ctx.optimizer.param_groups[0]["lr"])
        # No parameter has a gradient: AdamW leaves them untouched, the schedule steps.
        grad_norm = optimizer_step(self.ctx, self.opts.grad_clip)
        return {"loss": 0.0, "kl": 0.0, "entropy": 0.0, "clip_frac": 0.0, "is_masked_frac": 0.0,
                "logp_mismatch": 0.0, "grad_norm": grad_norm, "lr": lr}

    def _mini_batch(self, batches: list[MicroBatch], adv: torch.Tensor, lengths: torch.Tensor, inf: torch.Tensor,
                    scores: dict[str, torch.Tensor], norm: float, totals: dict[str, float]) -> None:
        o, ctx = self.opts, self.ctx
        acc, policy = ctx.accelerator, ctx.policy
        # DDP averages gradients over ranks; the normaliser already counts every rank, so scale to a sum.
        scale = acc.num_processes
        passes = backward_passes(ctx, len(batches))
        for n in range(passes):
            mb = (batches[n] if n < len(batches) else self._dummy()).to(ctx.device)
            mask = (mb.rollout >= 0).to(torch.float32)
            with acc.no_sync(policy) if n < passes - 1 else nullcontext():
                out = forward(policy, mb, o.temperature, with_entropy=True, dtype=ctx.dtype)
                ref = None
                if self.reference is not None and not o.kl_in_reward:
                    with torch.inference_mode():  # frozen, in the stage dtype: no autograd state at all
                        ref = forward(self.reference, mb, o.temperature, dtype=ctx.dtype).logprobs
                    ref = ref.clone()  # an inference tensor cannot be saved for the KL term's backward
                old = mb.gather(scores["old"]) if "old" in scores else out.logprobs.detach()
                engine = mb.gather(inf)
                c, outside = is_correction(old, engine, o.is_correction, o.is_band)
                weights = aggregation_weights(mask, mb.gather(lengths), o.aggregation, norm)
                parts = policy_loss(
                    out.logprobs, mb.gather(adv.float()), weights, old=old if "old" in scores else None,
                    clip_low=o.clip_low, clip_high=o.clip_high, dual_clip=o.dual_clip,
                    is_weight=c if o.is_correction != "none" else None, ref=ref,
                    kl_coef=0.0 if o.kl_in_reward else o.kl, entropy=out.entropy, entropy_coef=o.entropy,
                )
                acc.backward(parts.loss * scale)
            totals["loss"] += float(parts.loss.detach()) * scale
            for key in ("kl_sum", "entropy_sum", "tokens", "clipped_sum"):
                totals[key] += getattr(parts, key)
            totals["outside_sum"] += float((outside.float() * mask).sum())
            totals["mismatch_sum"] += float(((out.logprobs.detach() - engine).abs() * mask).sum())

    def _dummy(self) -> MicroBatch:
        """A one-token-prompt, one-token-completion row for a rank with nothing to train on this mini-batch
        (its loss has weight 0; it exists so that every rank runs the same backward passes)."""
        return MicroBatch(torch.tensor([[self.pad_id, self.pad_id]]), torch.ones(1, 2, dtype=torch.long), None,
                          torch.tensor([[0, 1]]), torch.tensor([[-1, -1]]), torch.zeros(1, 2, dtype=torch.long), [])
