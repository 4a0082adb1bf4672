"""One step of multi-domain on-policy distillation (Nemotron-Cascade 2 §4.4) or of its GKD-style KL variant.

Per step: the student samples ``rollouts_per_prompt`` completions of each prompt with the rollout engine
(which also returns ``log pi_inf`` of every sampled token); each row goes to its domain's teacher (the
stage's ``teachers`` block, ``default`` as the fallback); every teacher scores its rows in batches without
gradients; then exactly one optimizer step is taken over micro-batches with gradient accumulation. The LR
warm-up (the paper: 30 steps from 2e-7 to 2e-6) is the plan's ``Schedule``, applied by ``ctx.scheduler``.

Losses (``params.loss``): ``mopd`` needs one log-prob per sampled token from the teacher
(:func:`runtime.losses.distill.mopd_loss`); ``forward_kl``, ``reverse_kl`` and ``jsd`` compare whole
next-token distributions (full vocabulary, or the teacher's top ``kl_top_k``) at the student's positions
(:func:`runtime.losses.distill.logit_distill_loss`).

The student's log-probs are taken at the sampling temperature, the convention that makes ``pi_train / pi_inf``
equal 1 when the weights and numerics agree. The teachers are scored at ``teacher_temperature`` (default 1:
the teacher's own distribution, which MOPD's reverse KL and GKD assume; scoring them at a student's sampling
temperature T != 1 distils a sharpened or flattened teacher, a known pitfall of on-policy distillation set-ups).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from runtime import external
from runtime.logprobs import (
    last_position,
    pad_token_id,
    scatter_positions,
    token_logprobs,
    training_attention,
    unwrap_model,
)
from runtime.losses.distill import mopd_loss, sequence_token_mean
from runtime.ops import linear_token_divergence
from runtime.losses.overlong import rule_of
from runtime.rollout.base import RolloutBatch, engine_metrics
from runtime.routing import pick, route_key, unrouted_metrics, warn_unrouted
from runtime.serving.client import check_server_tokenizer, score
from runtime.serving.servers import endpoint
from runtime.stages import backward_passes, optimizer_step
from runtime.stages.grpo import rollout_seed, sequences
from runtime.state import atomic_write_json
from runtime.teachers import (
    BASE,
    TeacherError,
    check_embeddings,
    check_tokenizers,
    nothing_to_distil,
    resolve_teachers,
    route,
)

if TYPE_CHECKING:
    from runtime.context import StageContext
    from runtime.data import Sample

# A frozen forward keeps no activations for backward, so a teacher can score more rows at once than the
# student trains on. Its head runs over the completion tokens in chunks of TEACHER_CHUNK (runtime.ops; forward
# only, so one chunk's fp32 logits is all it holds: 0.8 GB at a 49,152-token vocabulary); small chunks would
# turn the head into many small GEMMs.
TEACHER_ROWS = 32
TEACHER_CHUNK = 4096
# AdamW training footprint per policy parameter, in units of the parameter's own size: weights, gradients
# and two moments. Activations are not counted: the placement plan is a lower bound, see plan_placement.
TRAIN_FOOTPRINT = 4


def plan_placement(teacher_bytes: dict[str, int], policy_bytes: int, budget: int | None) -> dict[str, str]:
    """Where each teacher lives: ``"device"`` (resident) or ``"cpu"`` (moved to the device to score).

    Teachers are kept resident in the order given while ``TRAIN_FOOTPRINT * policy_bytes`` plus the resident
    teachers fit in ``budget`` (the plan's ``memory_per_gpu_bytes``); the rest are offloaded, trading a
    host-to-device copy per step for memory. Without a budget every teacher is resident.

    >>> plan_placement({"a": 4, "b": 4}, policy_bytes=2, budget=14)
    {'a': 'device', 'b': 'cpu'}
    """
    if budget is None:
        return {name: "device" for name in teacher_bytes}
    free = budget - TRAIN_FOOTPRINT * policy_bytes
    out = {}
    for name, size in teacher_bytes.items():
        if size <= free:
            out[name] = "device"
            free -= size
        else:
            out[name] = "cpu"
    return out


def _param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _describe(ctx: StageContext, name: str) -> str:
    if name in ctx.plan.checkpoints:
        return external.describe(name, ctx.plan.checkpoints[name])
    return f"{ctx.plan.base.name} (base)" if name == BASE else f"{name} ({ctx.rundir.final(name)})"


def _tokenizer_of(ctx: StageContext, name: str) -> Any:
    """The tokenizer saved with a teacher checkpoint (the base model's for ``base``)."""
    from transformers import AutoTokenizer

    if name in ctx.plan.checkpoints:
        return external.external_tokenizer(name, ctx.plan.checkpoints[name])
    if name != BASE:
        return AutoTokenizer.from_pretrained(ctx.rundir.final(name))
    from runtime.models import load_model, packaged_checkpoint

    ref = ctx.plan.base
    if ref.kind == "packaged":
        return AutoTokenizer.from_pretrained(packaged_checkpoint(ref.name))
    if ref.kind in ("path", "hub"):
        return AutoTokenizer.from_pretrained(ref.name)
    return load_model(ref, seed=ctx.plan.seed)[1]  # a tiny model: building it is cheaper than any lookup


class TeacherPool:
    """The stage's distinct teacher checkpoints, each loaded once and frozen (domains that name the same
    checkpoint share one model object), checked against the student's tokenizer, and placed on the device
    or offloaded to the CPU by :func:`plan_placement`."""

    def __init__(self, ctx: StageContext, names: list[str]) -> None:
        self.ctx = ctx
        self.models: dict[str, torch.nn.Module] = {}
        for name in names:
            check_tokenizers(ctx.tokenizer, _tokenizer_of(ctx, name), ctx.stage.name, _describe(ctx, name))
            model = ctx.load_frozen(name)
            check_embeddings(model, ctx.tokenizer, _describe(ctx, name))
            self.models[name] = model
        self.placement = plan_placement(
            {n: _param_bytes(m) for n, m in self.models.items()},
            _param_bytes(ctx.unwrapped_policy()),
            ctx.stage.resources.memory_per_gpu_bytes,
        )
        for name, where in self.placement.items():
            if where == "cpu":
                self.models[name].to("cpu")

    @contextlib.contextmanager
    def on_device(self, name: str) -> Iterator[torch.nn.Module]:
        """The teacher ``name`` on the training device for the duration of the block."""
        model = self.models[name]
        offloaded = self.placement[name] == "cpu" and self.ctx.device.type != "cpu"
        if offloaded:
            model.to(self.ctx.device)
        try:
            yield model
        finally:
            if offloaded:
                model.to("cpu")


def place_rows(values: list[list[float]] | list[torch.Tensor], prompt_lens: list[int], width: int,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-row completion values -> ``[R, width]`` with row ``i``'s values at ``prompt_lens[i]`` onwards, 0
    elsewhere (the layout of :func:`runtime.stages.grpo.sequences`)."""
    out = torch.zeros(len(values), width, dtype=dtype)
    for i, (v, start) in enumerate(zip(values, prompt_lens)):
        if len(v):
            out[i, start:start + len(v)] = torch.as_tensor(v, dtype=dtype)
    return out


class DistillSetupError(TeacherError):
    """Stage settings a distill stage cannot run with (a TeacherError, so the entry point reports it as a
    user error with its ``help:`` line, not a traceback)."""


class DistillTrainer:
    """The ``distill`` stage's step (Trainer protocol in docs/ARCHITECTURE.md).

    Construction resolves the teachers (``best(...)`` from recorded evals), checks that each has finished
    and shares the student's tokenizer, loads each distinct checkpoint once, and records the resolution in
    ``stages/<name>/teachers.json``. With ``nothing_to_learn`` set it loads and asks no teacher (an empty
    ``pool`` and ``served``) but has every other attribute, so the loop and checkpoints treat it alike.

    Raises:
        TeacherError: an unresolvable, unfinished or incompatible teacher.
        DistillSetupError: ``overlong = penalty`` or ``soft`` (a distill stage has no reward) or a ``jsd`` loss
            whose ``jsd_beta`` is not strictly between 0 and 1.
    """

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.params = p = ctx.stage.params
        if p.overlong in ("penalty", "soft"):
            raise DistillSetupError(
                f"distill stage `{ctx.stage.name}` sets `overlong = {p.overlong}`, but distillation has no reward to change"
                "\nhelp: use `overlong = filter` to drop truncated samples from the loss, or `none`"
            )
        if p.loss == "jsd" and not 0.0 < p.jsd_beta < 1.0:
            raise DistillSetupError(
                f"distill stage `{ctx.stage.name}` uses `loss = jsd` with `jsd_beta = {p.jsd_beta}`"
                "\nhelp: give 0 < jsd_beta < 1, or use `loss = forward_kl` (beta 0) or `loss = reverse_kl` (beta 1)"
            )
        self.teachers = resolve_teachers(ctx.plan, ctx.stage, ctx.run_dir)
        self.temperature = p.student_temperature
        self.teacher_temperature = p.teacher_temperature
        self.pad_id = pad_token_id(ctx.tokenizer)
        self.warned = False
        self.nothing_to_learn = nothing_to_distil(ctx.stage, self.teachers)
        # run_stage takes no step when there is nothing to learn, so no teacher is loaded or asked
        needed = set() if self.nothing_to_learn else set(self.teachers.values())
        served = ctx.stage.resources.teacher_servers
        self.served = {n: endpoint(ctx.stage, n) for n in sorted(needed) if n in served}
        for ep in self.served.values():
            check_server_tokenizer(ep, ctx.tokenizer, f"student `{ctx.stage.name}`")
        self.pool = TeacherPool(ctx, sorted(needed - set(self.served)))
        self._record({**self.pool.placement, **{n: ep.url for n, ep in self.served.items()}})

    def _record(self, placement: dict[str, str]) -> None:
        """Write the resolved teachers and where each is held to ``stages/<name>/teachers.json``."""
        if self.ctx.is_main:
            atomic_write_json(self.ctx.rundir.stage_dir(self.ctx.stage.name) / "teachers.json",
                              {"teachers": self.teachers, "placement": placement})

    def state_dict(self) -> dict:
        """No state beyond model and optimizer: teachers are re-resolved (same evals, same answer) and
        rollout seeds derive from the step."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore (see ``state_dict``)."""

    # ---------------------------------------------------------------- one step

    def step(self, step: int, batch: list[Sample]) -> dict[str, float]:
        """Sample, route, score with the teachers, and take one optimizer step on ``batch``.

        Returns metrics: loss (with the teacher route weights), reverse_kl (per-token estimate
        ``mean(log pi_train - log pi_teacher)`` over valid tokens), reverse_kl/<domain>, is_ratio (mean
        ``pi_train / pi_inf``), gated_frac (tokens outside the band), entropy, response_len, truncated_frac,
        filtered_frac, teacher_rows/<teacher>, unrouted/<domain> (rows of a field-routed stage with no teacher,
        left out),
        tokens_per_s, grad_norm, lr, gen_s, teacher_s, train_s, and the engine's own (`engine_metrics`: a
        rollout server's weight_sync_s, weight_version).

        Raises:
            RuntimeError: the trainer has ``nothing_to_learn`` (no teacher was loaded; the loop takes no step).
        """
        ctx, p = self.ctx, self.params
        if self.nothing_to_learn:
            raise RuntimeError(f"distill stage `{ctx.stage.name}` takes no step: {self.nothing_to_learn}")
        start = time.perf_counter()
        rollouts = ctx.engine.generate(
            [ctx.render_prompt(s) for s in batch], n=p.rollouts_per_prompt, max_new_tokens=p.max_response,
            temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
            seed=rollout_seed(ctx.stage.seed, step, ctx.accelerator.process_index),
        )
        gen_s = time.perf_counter() - start
        samples = [s for s in batch for _ in range(p.rollouts_per_prompt)]
        keys = [self._route_of(s) for s in samples]
        names = [None if k is None else self.teachers[k] for k in keys]
        weights = [ctx.stage.teacher_weights.get(k, 1.0) if k is not None else 0.0 for k in keys]
        # a distill stage has no reward, so of a domain's rules only `filter` applies (CAS413 rejects the rest)
        keep = [n is not None and not (t and rule_of(p, ctx.plan.domains[s.domain]).kind == "filter")
                for s, t, n in zip(samples, rollouts.truncated, names)]
        rows = [i for i in range(len(samples)) if keep[i]]

        t0 = time.perf_counter()
        teacher_lp = self._score(rollouts, names, rows) if p.loss == "mopd" else {}
        teacher_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        stats = self._update(rollouts, samples, names, weights, rows, teacher_lp)
        train_s = time.perf_counter() - t0
        ctx.engine.sync_weights(ctx.policy)

        lengths = [len(c) for c in rollouts.completion_ids]
        metrics = {
            "loss": stats.pop("loss"),
            "response_len": sum(lengths) / max(len(lengths), 1),
            "truncated_frac": sum(rollouts.truncated) / max(len(lengths), 1),
            "filtered_frac": 1.0 - len(rows) / max(len(lengths), 1),
            "tokens_per_s": sum(lengths) / max(gen_s + teacher_s + train_s, 1e-9),
            "gen_s": gen_s, "teacher_s": teacher_s, "train_s": train_s,
            **stats, **engine_metrics(ctx.engine),
        }
        for name, count in sorted(Counter(n for n in names if n is not None).items()):
            metrics[f"teacher_rows/{name}"] = float(count)
        if ctx.stage.teacher_field is not None:
            metrics.update(unrouted_metrics(samples, names))
        return metrics

    def _route_of(self, sample: Sample) -> str | None:
        """The teacher route of one row (a key of ``self.teachers``): by its domain, or by the stage's
        ``teacher_field`` value (None: unrouted, left out of the step and warned about once, see
        :mod:`runtime.routing`)."""
        field = self.ctx.stage.teacher_field
        if field is None:
            route(sample.domain, self.teachers)  # raises TeacherError when there is no route and no default
            return pick(sample.domain, self.teachers)
        key = route_key(sample, field)
        chosen = pick(key, self.teachers)
        if chosen is None and not self.warned:
            self.warned = True
            warn_unrouted(f"distill stage `{self.ctx.stage.name}` teachers", field, key, list(self.teachers))
        return chosen

    def _score(self, rollouts: RolloutBatch, names: list[str], rows: list[int]) -> dict[int, torch.Tensor]:
        """``log pi_teacher`` of every completion token of ``rows``, each row scored by its own teacher.

        Rows of one local teacher are sorted by length and scored ``TEACHER_ROWS`` at a time under
        inference_mode, the head in the stage dtype; a served teacher's rows go to its server
        (:func:`runtime.serving.client.score`: prompt log-probs of prompt + completion).
        Returns row index -> ``[len(completion)]`` fp32 tensor on the CPU.
        """
        ctx, out = self.ctx, {}
        by_teacher: dict[str, list[int]] = {}
        for i in rows:
            by_teacher.setdefault(names[i], []).append(i)
        for name, idx in sorted(by_teacher.items()):
            if name in self.served:
                rows = [list(rollouts.prompt_ids[i]) + list(rollouts.completion_ids[i]) for i in idx]
                scored = score(self.served[name], rows, [len(rollouts.prompt_ids[i]) for i in idx])
                out.update({i: torch.tensor(lp, dtype=torch.float32) for i, lp in zip(idx, scored)})
                continue
            idx = sorted(idx, key=lambda i: len(rollouts.prompt_ids[i]) + len(rollouts.completion_ids[i]))
            with self.pool.on_device(name) as teacher, torch.inference_mode():
                for k in range(0, len(idx), TEACHER_ROWS):
                    chunk = idx[k:k + TEACHER_ROWS]
                    ids, attn, comp = (t.to(ctx.device) for t in sequences(rollouts, chunk, self.pad_id))
                    lp = token_logprobs(teacher, ids, attn, comp, chunk=TEACHER_CHUNK,
                                        temperature=self.teacher_temperature,
                                        compute_dtype=ctx.dtype).logprobs.float().cpu()
                    for r, i in enumerate(chunk):
                        start = len(rollouts.prompt_ids[i])
                        out[i] = lp[r, start:start + len(rollouts.completion_ids[i])]
        return out

    def _update(self, rollouts: RolloutBatch, samples: list[Sample], names: list[str], weights: list[float],
                rows: list[int], teacher_lp: dict[int, torch.Tensor]) -> dict[str, Any]:
        """One optimizer step over ``rows``, each row's loss times its teacher route's weight (``weights``,
        :func:`runtime.losses.distill.sequence_token_mean`); returns loss and the token statistics of the step.

        Every rank runs the same number of backward passes (DDP all-reduces in each synchronised one): a
        rank with fewer rows adds zero-weight micro-batches.
        """
        ctx, p = self.ctx, self.params
        acc, policy = ctx.accelerator, ctx.policy
        nonempty = sum(1 for i in rows if rollouts.completion_ids[i])
        # Normalise by the step's non-empty sequences on all ranks; DDP averages gradients over ranks, so
        # multiply by the world size to turn that average into the sum the objective asks for.
        num_seq = float(acc.reduce(torch.tensor(float(nonempty), device=ctx.device), reduction="sum"))
        scale = acc.num_processes
        chunks = [rows[i:i + p.micro_batch] for i in range(0, len(rows), p.micro_batch)]
        passes = backward_passes(ctx, len(chunks))
        lr = float(ctx.optimizer.param_groups[0]["lr"])
        sums: Counter = Counter()
        domain_kl: dict[str, list[float]] = {}
        for n in range(passes):
            real = n < len(chunks)
            chunk = chunks[n] if real else [0]
            ids, attn, comp = (t.to(ctx.device) for t in sequences(rollouts, chunk, self.pad_id))
            mask = comp.bool() if real else torch.zeros_like(comp, dtype=torch.bool)
            mask[:, 0] = False
            prompt_lens = [len(rollouts.prompt_ids[i]) for i in chunk]
            width = ids.shape[1]
            inf = place_rows([rollouts.completion_logprobs[i] for i in chunk], prompt_lens, width).to(ctx.device)
            row_w = torch.tensor([weights[i] for i in chunk], device=ctx.device)
            with acc.no_sync(policy) if n < passes - 1 else contextlib.nullcontext():
                if p.loss == "mopd":
                    out = token_logprobs(policy, ids, attn, comp, temperature=self.temperature, with_entropy=True,
                                         compute_dtype=ctx.dtype)
                    lp, entropy = out.logprobs, out.entropy
                    empty = torch.zeros(0)
                    lp_t = place_rows([teacher_lp.get(i, empty) for i in chunk], prompt_lens, width).to(ctx.device)
                    parts = mopd_loss(lp, lp_t, inf, mask, eps_low=p.is_band[0], eps_high=p.is_band[1],
                                      num_sequences=num_seq, row_weights=row_w)
                    loss, gated = parts.loss, parts.gated
                else:
                    loss, lp, lp_t, entropy = self._logit_loss(ids, attn, mask, [names[i] for i in chunk], num_seq,
                                                               row_w)
                    gated = torch.zeros_like(mask)
                acc.backward(loss * scale)
            lp, lp_t = lp.detach(), lp_t.detach()
            sums["loss"] += float(loss.detach()) * scale
            sums["tokens"] += float(mask.sum())
            sums["kl"] += float((lp - lp_t)[mask].sum())
            sums["ratio"] += float(torch.exp(lp - inf)[mask].sum())
            sums["gated"] += float(gated[mask].sum())
            sums["entropy"] += float(entropy.detach()[mask].sum())
            for r, i in enumerate(chunk):
                if mask[r].any():
                    domain_kl.setdefault(samples[i].domain, []).append(float((lp[r] - lp_t[r])[mask[r]].mean()))
        grad_norm = optimizer_step(ctx, p.optim.grad_clip)
        tokens = max(sums["tokens"], 1.0)
        stats = {
            "loss": sums["loss"], "reverse_kl": sums["kl"] / tokens, "is_ratio": sums["ratio"] / tokens,
            "gated_frac": sums["gated"] / tokens, "entropy": sums["entropy"] / tokens,
            "grad_norm": grad_norm, "lr": lr,
        }
        for domain, values in sorted(domain_kl.items()):
            stats[f"reverse_kl/{domain}"] = sum(values) / len(values)  # mean over that domain's sequences
        return stats

    def _logit_loss(self, ids: torch.Tensor, attn: torch.Tensor, mask: torch.Tensor, names: list[str],
                    num_seq: float, row_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                  torch.Tensor]:
        """GKD-style loss of one micro-batch ``[R, T]``: full next-token distributions of student and teachers.

        Only the completion positions go through the heads, in token chunks in the stage dtype
        (:func:`runtime.ops.linear_token_divergence`); no ``[R, T, V]`` logits are kept. Returns ``(loss,
        logp_train, logp_teacher, entropy)``, the last three ``[R, T]`` in the layout of
        :func:`runtime.logprobs.token_logprobs` (the value of token ``t`` at position ``t``).
        """
        p, ctx = self.params, self.ctx
        wanted = mask[:, 1:]
        with training_attention(ids):
            out = ctx.policy(input_ids=ids, attention_mask=attn, output_hidden_states=True,
                             logits_to_keep=last_position(ids), use_cache=False)
        student = out.hidden_states[-1][:, :-1]
        head = unwrap_model(ctx.policy).get_output_embeddings().weight
        div, lp, lp_t, entropy = (torch.zeros(mask.shape, device=ids.device) for _ in range(4))
        for name in sorted(set(names)):
            sub = torch.tensor([n == name for n in names], device=ids.device)
            rows = wanted & sub[:, None]
            if not bool(rows.any()):
                continue
            with self.pool.on_device(name) as model, torch.inference_mode(), training_attention(ids):
                t_out = model(input_ids=ids[sub], attention_mask=attn[sub], output_hidden_states=True,
                              logits_to_keep=last_position(ids), use_cache=False)
                t_hidden = t_out.hidden_states[-1][:, :-1][wanted[sub]]
                t_head = model.get_output_embeddings().weight
            parts = linear_token_divergence(
                student[rows], head, t_hidden.clone(), t_head, ids[:, 1:][rows], kind=p.loss, beta=p.jsd_beta,
                top_k=p.kl_top_k, vocab_size=len(ctx.tokenizer), temperature=self.temperature,
                teacher_temperature=self.teacher_temperature, compute_dtype=ctx.dtype)
            div = div + scatter_positions(rows, parts[0])
            for total, part in zip((lp, lp_t, entropy), parts[1:]):
                total += scatter_positions(rows, part)
        return sequence_token_mean(div, mask, num_seq, row_w), lp, lp_t, entropy
