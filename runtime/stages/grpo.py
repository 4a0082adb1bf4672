"""One GRPO step: rollouts, rewards, advantages, then the policy update.

Per step: render the batch's prompts, sample ``G = rollouts_per_prompt`` completions each with the rollout
engine, score each with its domain's reward, apply the overlong rule (the stage's, else the domain's). With
dynamic filtering, groups whose rewards are all equal are dropped and, within ``sampling_budget``
generation batches, more prompts are sampled until ``prompts_per_step`` informative groups are gathered
(:mod:`runtime.dynamic_sampling`). Then advantages (the stage's estimator; the KL folded into the reward
when so placed) and the update of :mod:`runtime.stages.policy_update`: with the defaults exactly one
optimizer step, ratio 1 in value (strict on-policy, Nemotron-Cascade 1/2 §4.1.2).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING

import torch

from runtime.dynamic_sampling import NoSignalWatch, after_attempt
from runtime.logprobs import pad_right, pad_token_id
from runtime.losses.advantages import advantages
from runtime.losses.grpo import informative_groups
from runtime.losses.overlong import apply_rules, rule_of
from runtime.losses.policy import kl_estimate, kl_in_reward
from runtime.rollout.base import RolloutBatch, engine_metrics
from runtime.routing import reward_metrics
from runtime.stages.grpo_rollouts import Attempt
from runtime.stages.policy_update import PolicyUpdate, UpdateOptions, per_token

if TYPE_CHECKING:
    from runtime.context import StageContext
    from cascadec.contract.params import GRPOParams
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
    """Rewards ``[N]`` from each row's domain reward, called once per domain on that domain's rows; NaN for a
    row without a reward (a routed reward's unrouted row, :mod:`runtime.routing`)."""
    by_domain: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_domain[s.domain].append(i)
    rewards = torch.zeros(len(samples))
    for domain, rows in by_domain.items():
        values = ctx.rewards[domain]([samples[i] for i in rows], [texts[i] for i in rows])
        rewards[rows] = torch.tensor([float(v) for v in values])
    return rewards


def update_options(p: GRPOParams) -> UpdateOptions:
    """The policy update's settings from a stage's ``grpo`` parameters."""
    return UpdateOptions(
        updates_per_step=p.updates_per_step, micro_batch=p.micro_batch, max_tokens=p.max_tokens_per_gpu,
        aggregation=p.loss, clip_low=p.clip[0] if p.clip else None, clip_high=p.clip[1] if p.clip else None,
        dual_clip=p.dual_clip, is_correction=p.is_correction, is_band=p.is_band, kl=p.kl,
        kl_estimator=p.kl_estimator, kl_in_reward=p.kl_in == "reward", entropy=p.entropy,
        temperature=p.temperature, grad_clip=p.optim.grad_clip,
    )


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
        self.update = PolicyUpdate(ctx, update_options(self.params), self.pad_id, self.reference)
        self.watch = NoSignalWatch(ctx.stage.name, self.params.no_signal_patience)

    def state_dict(self) -> dict:
        """The no-signal streak; rollout seeds derive from the step."""
        return {"no_signal_streak": self.watch.streak}

    def load_state_dict(self, state: dict) -> None:
        self.watch.streak = int(state.get("no_signal_streak", 0))

    def _overlong(self, samples: list[Sample], rewards: torch.Tensor, truncated: torch.Tensor,
                  lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rules = [rule_of(self.params, self.ctx.plan.domains[s.domain]) for s in samples]
        return apply_rules(rewards, truncated, lengths, self.params.max_response, rules)

    def _sample(self, step: int, attempt: int, batch: list[Sample]) -> Attempt:
        """One generation batch: rollouts, rewards (overlong rule applied), kept rows, informative groups."""
        ctx, p = self.ctx, self.params
        start = time.perf_counter()
        rollouts = ctx.engine.generate(
            [ctx.render_prompt(s) for s in batch], n=p.rollouts_per_prompt, max_new_tokens=p.max_response,
            temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
            seed=rollout_seed(ctx.stage.seed, step, ctx.accelerator.process_index) + attempt * 7_919,
        )
        gen_s = time.perf_counter() - start
        samples = [s for s in batch for _ in range(p.rollouts_per_prompt)]
        truncated = torch.tensor(rollouts.truncated, dtype=torch.bool)
        lengths = torch.tensor([len(c) for c in rollouts.completion_ids], dtype=torch.float32)
        raw = score(ctx, samples, rollouts.texts)
        # an unrouted row has no reward: 0 keeps its group's advantages finite (the whole group shares the row's
        # fields, so all of it is unrouted and uninformative), and it stays out of the loss
        rewards, keep = self._overlong(samples, raw.nan_to_num(0.0), truncated, lengths)
        keep &= ~raw.isnan()
        informative = informative_groups(rewards, p.rollouts_per_prompt)
        return Attempt(rollouts, samples, rewards, keep, truncated, informative, gen_s,
                       time.perf_counter() - start - gen_s)

    def _gather(self, step: int, batch: list[Sample]) -> tuple[Attempt, bool]:
        """Generation batches until enough informative groups or the budget (one batch without dynamic
        filtering); returns the rollouts to train on and whether to take an optimizer step."""
        ctx, p = self.ctx, self.params
        got = self._sample(step, 0, batch)
        if not p.dynamic_filter:
            self._observe(step, got)
            return got, True
        attempt, wanted = 1, p.prompts_per_step
        while True:
            decision = after_attempt(self._global(got.informative.sum()), wanted, attempt, p.sampling_budget,
                                     p.on_no_signal, ctx.stage.name, step)
            if not decision.more:
                break
            got = got.extend(self._sample(step, attempt, ctx.resample(step, attempt)))
            attempt += 1
        self._observe(step, got)
        if decision.warning and ctx.is_main:
            print(f"warning: {decision.warning}", flush=True)
        return got.only_informative(self._share(), p.rollouts_per_prompt), decision.train

    def _global(self, local: float | torch.Tensor) -> int:
        acc = self.ctx.accelerator
        return int(acc.reduce(torch.tensor(float(local), device=self.ctx.device), reduction="sum"))

    def _share(self) -> int:
        """This rank's share of ``prompts_per_step`` informative groups (the loop strides prompts over ranks)."""
        acc, p = self.ctx.accelerator, self.params
        return len(range(acc.process_index, p.prompts_per_step, acc.num_processes))

    def _observe(self, step: int, got: Attempt) -> None:
        warning = self.watch.observe(step, self._global(got.informative.sum()))
        if warning and self.ctx.is_main:
            print(f"warning: {warning}", flush=True)

    def _advantages(self, got: Attempt, scores: dict[str, torch.Tensor]) -> torch.Tensor:
        p, acc = self.params, self.ctx.accelerator
        rewards = got.rewards
        if "ref" in scores:
            mask = per_token([[1.0] * len(c) for c in got.rollouts.completion_ids])
            rewards = kl_in_reward(rewards, kl_estimate(scores["old"], scores["ref"], p.kl_estimator), mask, p.kl)
        lengths = torch.tensor([len(c) for c in got.rollouts.completion_ids], dtype=torch.float32) * got.keep

        def across_ranks(t: torch.Tensor) -> torch.Tensor:
            return acc.reduce(t.to(self.ctx.device), reduction="sum").cpu()

        return advantages(p.advantage, rewards, p.rollouts_per_prompt, lengths=lengths, reduce=across_ranks)

    def step(self, step: int, batch: list[Sample]) -> dict[str, float]:
        """Rollouts, rewards and the update on ``batch`` (``prompts_per_step`` samples).

        Returns metrics: loss, reward_mean, reward_std, kl, entropy, response_len, truncated_frac,
        filtered_frac (rollouts left out of the loss by dynamic or overlong filtering), zero_std_frac
        (groups without signal), informative_frac, sampling_attempts, clip_frac, is_masked_frac,
        tokens_per_s (completion tokens per second of the step), grad_norm, lr, logp_mismatch (mean
        |log pi_train - log pi_inf| per kept token: 0 up to numerics when the engine samples from the trained
        weights), gen_s, reward_s, train_s, reward_mean/<domain> per domain and reward/<domain>/<name> for what its
        reward logged (rows per route, extra values of user functions), the engine's own (`engine_metrics`: a
        rollout server's weight_sync_s, seconds of the weight reload this step waited for, and weight_version);
        this rank's values (the loop combines ranks).
        """
        ctx = self.ctx
        got, train = self._gather(step, batch)
        train_start = time.perf_counter()
        if train:
            scores = self.update.scores(got.rollouts, got.keep.nonzero().flatten().tolist())
            update = self.update.run(got.rollouts, self._advantages(got, scores), got.keep, scores)
        else:
            update = self.update.skip()
        train_s = time.perf_counter() - train_start
        ctx.engine.sync_weights(ctx.policy)
        logged = {f"reward/{d}/{k}": v for d in sorted({s.domain for s in batch})
                  for k, v in reward_metrics(ctx.rewards[d]).items()}
        return {**got.metrics(train_s, batch), **update, **logged, **engine_metrics(ctx.engine)}
