"""One GRPO step as run in Nemotron-Cascade 1/2 (§4.1.2): rollouts, rewards, group advantages, one update.

Per step: render the batch's prompts, sample ``G = rollouts_per_prompt`` completions each with the rollout
engine, score each with its domain's reward, apply the overlong rule (the stage's, else the domain's),
compute group-normalised advantages, optionally drop zero-variance groups (dynamic filtering), then take
exactly one optimizer step over micro-batches with gradient accumulation (strict on-policy: the rollouts
come from the weights being updated, so the importance ratio is 1 in value).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch

from runtime.logprobs import pad_right, pad_token_id, token_logprobs
from runtime.losses.grpo import apply_overlong, group_advantages, grpo_loss, informative_groups
from runtime.rollout.base import RolloutBatch
from runtime.stages import backward_passes, optimizer_step

if TYPE_CHECKING:
    from runtime.context import StageContext
    from runtime.data import Sample


def rollout_seed(stage_seed: int, step: int, rank: int) -> int:
    """Seed of one step's sampling on one rank: fixed by (stage seed, step, rank), so a resumed run
    draws the same rollouts as an uninterrupted one, and ranks draw different ones."""
    return (stage_seed * 1_000_003 + step) * 1_009 + rank


def sequences(batch: RolloutBatch, index: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt + completion rows ``index`` of ``batch`` as right-padded ``(input_ids, attention_mask,
    completion_mask)``, each ``[R, T]``; the completion mask is 1 on the completion tokens."""
    rows = [batch.prompt_ids[i] + batch.completion_ids[i] for i in index]
    comp = [[0] * len(batch.prompt_ids[i]) + [1] * len(batch.completion_ids[i]) for i in index]
    return pad_right(rows, pad_id), pad_right([[1] * len(r) for r in rows], 0), pad_right(comp, 0)


def score(ctx: StageContext, samples: list[Sample], texts: list[str]) -> torch.Tensor:
    """Rewards ``[N]`` from each row's domain reward, called once per domain on that domain's rows."""
    by_domain: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_domain[s.domain].append(i)
    rewards = torch.zeros(len(samples))
    for domain, rows in by_domain.items():
        values = ctx.rewards[domain]([samples[i] for i in rows], [texts[i] for i in rows])
        rewards[rows] = torch.tensor([float(v) for v in values])
    return rewards


class GRPOTrainer:
    """The ``grpo`` stage's step (Trainer protocol in docs/ARCHITECTURE.md).

    With ``kl > 0`` the frozen reference is the stage's initial checkpoint (its parent, or the base model),
    loaded once at construction.
    """

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.params = ctx.stage.params
        self.reference = ctx.load_frozen(ctx.stage.parent) if self.params.kl > 0 else None
        self.pad_id = pad_token_id(ctx.tokenizer)

    def state_dict(self) -> dict:
        """No state beyond the model and optimizer: rollout seeds derive from the step."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore (see ``state_dict``)."""

    def _overlong(self, samples: list[Sample], rewards: torch.Tensor, truncated: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        keep = torch.ones_like(truncated)
        for mode in ("penalty", "filter"):
            rows = torch.tensor([
                (self.params.overlong or self.ctx.plan.domains[s.domain].overlong) == mode for s in samples
            ])
            if rows.any():
                new_rewards, new_keep = apply_overlong(rewards[rows], truncated[rows], mode)
                rewards[rows], keep[rows] = new_rewards, new_keep
        return rewards, keep

    def step(self, step: int, batch: list[Sample]) -> dict[str, float]:
        """Rollouts, rewards and one optimizer step on ``batch`` (``prompts_per_step`` samples).

        Returns metrics: loss, reward_mean, reward_std, kl, entropy, response_len, truncated_frac,
        filtered_frac (rollouts left out of the loss by dynamic or overlong filtering), zero_std_frac
        (groups without signal), tokens_per_s (completion tokens per second of the step), grad_norm, lr,
        logp_mismatch (mean |log pi_train - log pi_inf| per kept token: 0 up to numerics when the engine
        samples from the trained weights), gen_s, reward_s, train_s, and reward_mean/<domain> per domain;
        this rank's values (the loop combines ranks).
        """
        ctx, p = self.ctx, self.params
        group = p.rollouts_per_prompt
        start = time.perf_counter()
        rollouts = ctx.engine.generate(
            [ctx.render_prompt(s) for s in batch], n=group, max_new_tokens=p.max_response,
            temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
            seed=rollout_seed(ctx.stage.seed, step, ctx.accelerator.process_index),
        )
        gen_s = time.perf_counter() - start
        samples = [s for s in batch for _ in range(group)]
        truncated = torch.tensor(rollouts.truncated, dtype=torch.bool)
        rewards, keep = self._overlong(samples, score(ctx, samples, rollouts.texts), truncated)
        reward_s = time.perf_counter() - start - gen_s
        advantages = group_advantages(rewards, group)
        informative = informative_groups(rewards, group)
        if p.dynamic_filter:
            keep &= informative.repeat_interleave(group)

        train_start = time.perf_counter()
        update = self._update(rollouts, advantages, keep)
        train_s = time.perf_counter() - train_start
        ctx.engine.sync_weights(ctx.policy)

        lengths = torch.tensor([len(c) for c in rollouts.completion_ids], dtype=torch.float32)
        metrics = {
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
            "response_len": float(lengths.mean()),
            "truncated_frac": float(truncated.float().mean()),
            "filtered_frac": float(1.0 - keep.float().mean()),
            "zero_std_frac": float(1.0 - informative.float().mean()),
            "tokens_per_s": float(lengths.sum()) / max(gen_s + train_s, 1e-9),
            "gen_s": gen_s,
            "reward_s": reward_s,
            "train_s": train_s,
            **update,
        }
        for domain in sorted({s.domain for s in batch}):
            rows = torch.tensor([s.domain == domain for s in samples])
            metrics[f"reward_mean/{domain}"] = float(rewards[rows].mean())
        return metrics

    def _update(self, rollouts: RolloutBatch, advantages: torch.Tensor, keep: torch.Tensor) -> dict[str, float]:
        """One optimizer step over the kept rollouts; returns loss, kl, entropy, logp_mismatch, grad_norm, lr.

        Every rank runs the same number of backward passes (DDP all-reduces in each synchronised one): a
        rank with fewer kept rollouts adds zero-weight micro-batches.
        """
        ctx, p = self.ctx, self.params
        acc, policy = ctx.accelerator, ctx.policy
        kept = keep.nonzero().flatten().tolist()
        lengths = [len(rollouts.completion_ids[i]) for i in kept]
        local = float(sum(lengths) if p.loss == "token_mean" else sum(n > 0 for n in lengths))
        # Normalise by the whole step's count on all ranks; DDP then averages gradients over ranks, so scale
        # by the world size to get a sum.
        normaliser = max(float(acc.reduce(torch.tensor(local, device=ctx.device), reduction="sum")), 1.0)
        scale = acc.num_processes
        chunks = [kept[i:i + p.micro_batch] for i in range(0, len(kept), p.micro_batch)]
        passes = backward_passes(ctx, len(chunks))
        lr = float(ctx.optimizer.param_groups[0]["lr"])
        totals = {"loss": 0.0, "kl_sum": 0.0, "entropy_sum": 0.0, "tokens": 0.0, "mismatch_sum": 0.0}
        for n in range(passes):
            rows = chunks[n] if n < len(chunks) else [0]
            ids, attn, comp = (t.to(ctx.device) for t in sequences(rollouts, rows, self.pad_id))
            mask = comp.clone() if n < len(chunks) else torch.zeros_like(comp)
            mask[:, 0] = 0
            with acc.no_sync(policy) if n < passes - 1 else nullcontext():
                out = token_logprobs(policy, ids, attn, comp, temperature=p.temperature, with_entropy=True,
                                     compute_dtype=ctx.dtype)
                ref = None
                if self.reference is not None:
                    with torch.inference_mode():  # frozen, in the stage dtype: no autograd state at all
                        ref = token_logprobs(self.reference, ids, attn, comp, temperature=p.temperature,
                                             compute_dtype=ctx.dtype).logprobs
                    ref = ref.clone()  # an inference tensor cannot be saved for the KL term's backward
                parts = grpo_loss(
                    out.logprobs, mask, advantages[rows].to(ctx.device), aggregation=p.loss,
                    normaliser=normaliser, ref_logprobs=ref, kl_coef=p.kl, entropy=out.entropy,
                    entropy_coef=p.entropy,
                )
                acc.backward(parts.loss * scale)
            totals["loss"] += float(parts.loss.detach()) * scale
            totals["kl_sum"] += parts.kl_sum
            totals["entropy_sum"] += parts.entropy_sum
            totals["tokens"] += parts.tokens
            sampled = pad_right([[0.0] * len(rollouts.prompt_ids[i]) + rollouts.completion_logprobs[i] for i in rows],
                                0, dtype=torch.float32).to(ctx.device)
            totals["mismatch_sum"] += float(((out.logprobs.detach() - sampled).abs() * mask).sum())
        grad_norm = optimizer_step(ctx, p.optim.grad_clip)
        tokens = max(totals["tokens"], 1.0)
        return {"loss": totals["loss"], "kl": totals["kl_sum"] / tokens, "entropy": totals["entropy_sum"] / tokens,
                "logp_mismatch": totals["mismatch_sum"] / tokens, "grad_norm": grad_norm, "lr": lr}
