"""One step of offline distillation: SFT on a teacher's tokens with a top-k KD term, teacher work cached.

Targets (``params.targets``): ``generations``, the completion the sample's teacher (the ``teachers`` block,
``default`` as the fallback, as in ``distill``) generates for the prompt at ``teacher_temperature`` (greedy at
0), or ``data``, the domain's own completion column (an external teacher's generations shipped as data,
rendered as in SFT). For every target token the teacher's top ``kd_top_k`` token ids and log-probs at
``teacher_temperature`` are taken once, when the sample is first drawn, and cached per rank under
``stages/NAME/teacher_cache/`` (reused across epochs and on resume; a cache written with other settings is
discarded). Each step's loss is :func:`runtime.losses.kd.mixed_loss`: ``(1 - kd_weight)`` cross-entropy on
the target tokens plus ``kd_weight`` top-k forward KL to the teacher, averaged over the step's target tokens.
With ``kd_weight = 0`` no top-k pass is run and this is SFT on the teacher's generations (sequence-level KD).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.utils.rnn import pad_sequence

from runtime.chat import render_sft
from runtime.logprobs import pad_right, pad_token_id
from runtime.losses.kd import mixed_loss, topk_forward_kl
from runtime.stages import backward_passes, optimizer_step
from runtime.stages.distill import TeacherPool
from runtime.stages.sft import sft_completion
from runtime.teachers import resolve_teachers, route

if TYPE_CHECKING:
    from torch import nn

    from runtime.context import StageContext
    from runtime.data import Sample

GENERATE_ROWS = 16


class TeacherCache:
    """Per-rank cache ``sample id -> {"prompt", "completion", "ids", "logp"}`` saved as one ``torch`` file,
    valid for one ``fingerprint`` (teachers and the settings that change what a teacher returns)."""

    def __init__(self, folder: Path, rank: int, fingerprint: dict) -> None:
        self.path = folder / f"rank{rank}.pt"
        self.fingerprint = fingerprint
        self.entries: dict[str, dict] = {}
        if self.path.is_file():
            saved = torch.load(self.path, map_location="cpu", weights_only=False)
            if saved.get("fingerprint") == fingerprint:
                self.entries = saved["entries"]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({"fingerprint": self.fingerprint, "entries": self.entries}, tmp)
        tmp.replace(self.path)


class OfflineDistillTrainer:
    """The ``offline_distill`` stage's step (Trainer protocol in docs/ARCHITECTURE.md)."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx, self.params = ctx, ctx.stage.params
        p = self.params
        self.teachers = resolve_teachers(ctx.plan, ctx.stage, ctx.run_dir)
        self.pool = TeacherPool(ctx, sorted(set(self.teachers.values())))
        self.pad_id = pad_token_id(ctx.tokenizer)
        fingerprint = {"teachers": self.teachers, "targets": p.targets, "top_k": p.kd_top_k,
                       "temperature": p.teacher_temperature, "max_response": p.max_response, "kd": p.kd_weight > 0}
        self.cache = TeacherCache(ctx.rundir.stage_dir(ctx.stage.name) / "teacher_cache",
                                  ctx.accelerator.process_index, fingerprint)

    def state_dict(self) -> dict:
        """Nothing beyond model and optimizer: the teacher cache is its own file."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore (see ``state_dict``)."""

    # ---------------------------------------------------------------- the teacher, once per sample

    def _targets(self, samples: list[Sample]) -> None:
        """Fill the cache for ``samples`` not in it yet: target tokens, then the teacher's top-k."""
        todo = [s for s in samples if s.id not in self.cache.entries]
        if not todo:
            return
        ctx, p = self.ctx, self.params
        for name in sorted({route(s.domain, self.teachers) for s in todo}):
            rows = [s for s in todo if route(s.domain, self.teachers) == name]
            with self.pool.on_device(name) as teacher:
                for k in range(0, len(rows), GENERATE_ROWS):
                    chunk = rows[k:k + GENERATE_ROWS]
                    pairs = self._generate(teacher, chunk) if p.targets == "generations" else self._from_data(chunk)
                    topk = self._topk(teacher, pairs) if p.kd_weight > 0 else [(None, None)] * len(chunk)
                    for s, (prompt, completion), (ids, logp) in zip(chunk, pairs, topk):
                        self.cache.entries[s.id] = {"prompt": prompt, "completion": completion, "ids": ids, "logp": logp}
        self.cache.save()

    def _from_data(self, samples: list[Sample]) -> list[tuple[list[int], list[int]]]:
        ctx, p = self.ctx, self.params
        out = []
        for s in samples:
            ex = render_sft(ctx.tokenizer, ctx.plan.chat, ctx.stage.mode, ctx.system_prompt(s.domain), s.prompt,
                            sft_completion(s), max_seq=p.max_prompt + p.max_response)
            cut = ex.loss_mask.index(1) if 1 in ex.loss_mask else len(ex.input_ids)
            out.append((ex.input_ids[:cut], ex.input_ids[cut:]))
        return out

    def _generate(self, teacher: nn.Module, samples: list[Sample]) -> list[tuple[list[int], list[int]]]:
        from runtime.rollout.hf import HFRolloutEngine

        ctx, p = self.ctx, self.params
        engine = HFRolloutEngine(teacher, ctx.tokenizer)
        out = engine.generate([ctx.render_prompt(s) for s in samples], n=1, max_new_tokens=p.max_response,
                              temperature=p.teacher_temperature, top_p=1.0, top_k=0, seed=ctx.stage.seed)
        return list(zip(out.prompt_ids, out.completion_ids))

    @torch.no_grad()
    def _topk(self, teacher: nn.Module, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ctx, p = self.ctx, self.params
        ids, attn = self._rows(pairs)
        logits = teacher(input_ids=ids.to(ctx.device), attention_mask=attn.to(ctx.device), use_cache=False).logits
        logp = torch.log_softmax(logits[..., :len(ctx.tokenizer)].float() / p.teacher_temperature, dim=-1)
        top = logp.topk(min(p.kd_top_k, logp.shape[-1]), dim=-1)
        out = []
        for r, (prompt, completion) in enumerate(pairs):
            # position t - 1 predicts token t: the completion's predictions start one before it
            span = slice(len(prompt) - 1, len(prompt) + len(completion) - 1)
            out.append((top.indices[r, span].cpu().to(torch.int32), top.values[r, span].cpu().to(torch.float16)))
        return out

    def _rows(self, pairs: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [prompt + completion for prompt, completion in pairs]
        return pad_right(seqs, self.pad_id), pad_right([[1] * len(x) for x in seqs], 0)

    # ---------------------------------------------------------------- one step

    def step(self, step: int, batch: list[Sample]) -> dict[str, float]:
        """One optimizer step on ``batch`` (``batch_size`` prompts, this rank's share).

        Returns metrics: loss, ce (mean NLL per target token), kd (mean top-k KL per target token; 0 without
        the KD term), tokens, cached (samples whose teacher work came from the cache), teacher_s, train_s,
        grad_norm, lr.
        """
        ctx, p = self.ctx, self.params
        acc = ctx.accelerator
        start = time.perf_counter()
        cached = sum(s.id in self.cache.entries for s in batch)
        self._targets(batch)
        teacher_s = time.perf_counter() - start
        entries = [self.cache.entries[s.id] for s in batch]
        local = float(sum(len(e["completion"]) for e in entries))
        total = max(float(acc.reduce(torch.tensor(local, device=ctx.device), reduction="sum")), 1.0)
        chunks = [entries[i:i + p.micro_batch] for i in range(0, len(entries), p.micro_batch)]
        passes = backward_passes(ctx, len(chunks))
        lr = float(ctx.optimizer.param_groups[0]["lr"])
        sums = {"loss": 0.0, "ce": 0.0, "kd": 0.0}
        for n in range(passes):
            real = n < len(chunks)
            with acc.no_sync(ctx.policy) if n < passes - 1 else nullcontext():
                parts = self._micro(chunks[n] if real else entries[:1], total, real)
                acc.backward(parts["loss"] * acc.num_processes)
            parts["loss"] = parts["loss"].detach()
            for key in sums:
                sums[key] += float(parts[key]) * acc.num_processes
        grad_norm = optimizer_step(ctx, p.optim.grad_clip)
        ctx.engine.sync_weights(ctx.policy)
        return {"loss": sums["loss"], "ce": sums["ce"], "kd": sums["kd"], "tokens": local, "cached": float(cached),
                "teacher_s": teacher_s, "train_s": time.perf_counter() - start - teacher_s,
                "grad_norm": grad_norm, "lr": lr}

    def _micro(self, entries: list[dict], total: float, real: bool) -> dict[str, Any]:
        ctx, p = self.ctx, self.params
        pairs = [(e["prompt"], e["completion"]) for e in entries]
        ids, attn = (t.to(ctx.device) for t in self._rows(pairs))
        logits = ctx.policy(input_ids=ids, attention_mask=attn, use_cache=False).logits[..., :len(ctx.tokenizer)]
        width = max([len(c) for _, c in pairs] + [1])
        # the completion positions of each row, right-padded: student logits [B, W, V], targets [B, W]
        student = torch.stack([torch.nn.functional.pad(
            logits[r, len(pr) - 1:len(pr) + len(c) - 1], (0, 0, 0, width - len(c))) for r, (pr, c) in enumerate(pairs)])
        target = pad_right([c + [0] * (width - len(c)) for _, c in pairs], 0).to(ctx.device)
        mask = pad_right([[1] * len(c) + [0] * (width - len(c)) for _, c in pairs], 0).to(ctx.device).float()
        mask = mask * (1.0 if real else 0.0)
        ce = torch.nn.functional.cross_entropy(student.float().transpose(1, 2), target, reduction="none")
        kd = torch.zeros_like(ce)
        if p.kd_weight > 0:
            top_ids = pad_sequence([e["ids"].long() for e in entries], batch_first=True).to(ctx.device)
            top_logp = pad_sequence([e["logp"].float() for e in entries], batch_first=True).to(ctx.device)
            kd = topk_forward_kl(student[:, :top_ids.shape[1]], top_ids, top_logp, p.teacher_temperature)
        loss = mixed_loss(ce, kd, mask, p.kd_weight, total)
        return {"loss": loss, "ce": float((ce.detach() * mask).sum() / total),
                "kd": float((kd.detach() * mask).sum() / total)}
