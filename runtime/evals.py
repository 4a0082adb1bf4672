"""Held-out evals of every domain, recorded to ``evals.jsonl``: pass@1 (one completion per item, greedy unless
the eval sets a temperature), avg@k and pass@k.

Each rank scores a strided shard of every eval set (padded so that every rank makes the same number of
``generate`` calls) with the stage's rollout engine and the domain's reward; the per-item scores are gathered
so every rank returns the same records (the ``until`` rules must agree across ranks), and put back in the eval
set's item order, so that two checkpoints' records can be compared item by item (``runtime.changes``). A
completion counts as correct for pass@k when its reward is >= 0.5.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cascadec.contract.plan import EvalSpec, Plan
from runtime.data import Sample, load_source

if TYPE_CHECKING:
    from runtime.context import StageContext

CORRECT = 0.5
CHUNK = 64  # prompts per generate call: bounds KV-cache memory on long evals


@dataclass(frozen=True)
class EvalSet:
    """One eval of a domain: its spec, its items, and ``groups``, each item's cluster (:func:`item_groups`),
    computed once here rather than at every eval point: the items never change during a run."""

    domain: str
    spec: EvalSpec
    samples: list[Sample]
    groups: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(item_groups(self.samples)))


def load_eval_sets(plan: Plan) -> list[EvalSet]:
    """Every eval of every domain, in sorted domain order. Raises DataError for bad eval data."""
    sets = []
    for name in sorted(plan.domains):
        for spec in plan.domains[name].evals:
            samples = load_source(spec.data, domain=name, split=f"eval/{spec.name}")
            sets.append(EvalSet(name, spec, samples))
    return sets


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct (Chen et al. 2021, "Evaluating Large Language
    Models Trained on Code", Eq. 1): ``1 - C(n-c, k) / C(n, k)``. Raises ValueError when ``k > n``."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def item_score(spec: EvalSpec, rewards: Sequence[float]) -> float:
    """One item's score from the rewards of its ``n`` completions (``n = 1`` for pass@1); NaN when a
    completion has no reward (an unrouted item)."""
    if any(math.isnan(r) for r in rewards):
        return math.nan
    if spec.metric == "pass@1":
        return float(rewards[0])
    if spec.metric == "avg@k":
        return sum(rewards) / len(rewards)
    return pass_at_k(len(rewards), sum(r >= CORRECT for r in rewards), spec.k)


def samples_per_item(spec: EvalSpec) -> int:
    return 1 if spec.metric == "pass@1" else max(1, spec.k)


def score_shard(ctx: StageContext, eval_set: EvalSet, items: Sequence[Sample], seed: int) -> list[float]:
    """Scores of ``items`` (one float per item) with ``ctx.engine`` and ``ctx.rewards[domain]``."""
    spec = eval_set.spec
    n = samples_per_item(spec)
    # pass@1 is one completion per item: greedy at the default temperature 0, sampled where the spec sets one
    # (the papers' "pass@1 at temperature 0.6")
    temperature = spec.temperature
    reward = ctx.rewards[eval_set.domain]
    scores: list[float] = []
    for start in range(0, len(items), CHUNK):
        chunk = list(items[start : start + CHUNK])
        prompts = [ctx.render_prompt(s) for s in chunk]
        out = ctx.engine.generate(
            prompts, n=n, max_new_tokens=spec.max_tokens, temperature=temperature,
            top_p=spec.top_p, top_k=0, seed=seed + start,
        )
        repeated = [s for s in chunk for _ in range(n)]
        values = reward(repeated, out.texts)
        scores.extend(item_score(spec, values[i * n : (i + 1) * n]) for i in range(len(chunk)))
    return scores


def rank_shard(samples: Sequence[Sample], rank: int, world: int) -> tuple[list[Sample], int]:
    """Rank ``rank``'s strided share of ``samples`` and how many of it are real items.

    Every share is padded to ``ceil(len(samples) / world)`` items with copies of the first item, whose
    scores the caller drops: under FSDP2 or ZeRO-3 every forward is a collective, so every rank must make
    the same number of ``generate`` calls, or the rank with fewer items leaves the others waiting forever.
    """
    shard = list(samples[rank::world])
    size = math.ceil(len(samples) / world)
    return shard + list(samples[:1]) * (size - len(shard)), len(shard)


def run_evals(ctx: StageContext, eval_sets: Sequence[EvalSet], *, stage: str, step: int, seed: int) -> list[dict]:
    """Evaluate the current policy on every eval set; returns one record per eval on every rank.

    Records: ``{"stage", "step", "domain", "eval", "metric", "score", "n", "item_scores", "item_groups"}``:
    ``item_scores`` holds one score per item of the eval set, in its order, None for an item that was not
    scored (its routed reward has no route for it), and ``item_groups`` each item's cluster (``EvalSet.groups``);
    ``n`` counts the scored items and ``score`` is their mean (0 when none).
    The caller (rank 0) appends them to ``evals.jsonl``.
    """
    acc = ctx.accelerator
    rank, world = acc.process_index, acc.num_processes
    records = []
    for eval_set in eval_sets:
        shard, real = rank_shard(eval_set.samples, rank, world)
        local = score_shard(ctx, eval_set, shard, seed)[:real] if shard else []
        # the real part of the shard is items rank, rank + world, ... (rank_shard's stride)
        items = item_order(_gather(acc, list(zip(range(rank, len(eval_set.samples), world), local))),
                           len(eval_set.samples))
        scores = [s for s in items if s is not None]
        metric = eval_set.spec.metric.replace("@k", f"@{eval_set.spec.k}")
        records.append(
            {
                "stage": stage,
                "step": step,
                "domain": eval_set.domain,
                "eval": eval_set.spec.name,
                "metric": metric,
                "score": sum(scores) / len(scores) if scores else 0.0,
                "n": len(scores),
                "item_scores": items,
                "item_groups": list(eval_set.groups),
            }
        )
    return records


def item_groups(samples: Sequence[Sample]) -> list[int]:
    """Each item's cluster: the index of the first item with the same prompt (text and chat messages). Items
    that repeat a prompt score alike (identically under greedy decoding), so the standard error of a change
    counts them as one cluster (``runtime.changes``)."""
    first: dict[str, int] = {}
    return [first.setdefault(json.dumps([s.prompt, s.messages], sort_keys=True), i) for i, s in enumerate(samples)]


def item_order(pairs: Sequence[tuple[int, float]], size: int) -> list[float | None]:
    """The scores of ``(item index, score)`` pairs gathered from every rank as one list in item order, None
    for an unscored item (a NaN score: no reward, ``runtime.routing``; JSON has no NaN). Raises ValueError
    unless the pairs cover each of the ``size`` items exactly once."""
    if sorted(i for i, _ in pairs) != list(range(size)):
        raise ValueError(f"gathered eval scores do not cover items 0..{size - 1} once each")
    out: list[float | None] = [None] * size
    for i, score in pairs:
        out[i] = None if math.isnan(score) else float(score)
    return out


def _gather(acc: Any, local: list[tuple[int, float]]) -> list[tuple[int, float]]:
    if acc.num_processes == 1:
        return local
    from accelerate.utils import gather_object

    # gather_object flattens one level: each rank contributes its list of (item index, score) pairs.
    return [(int(i), float(s)) for i, s in gather_object(local)]
