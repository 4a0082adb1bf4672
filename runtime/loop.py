"""The stage loop (docs/ARCHITECTURE.md, "Stage loop and trainers"): batches, trainer steps, metrics,
checkpoints, evals, ``until`` rules and the final checkpoint.

Crash safety: a checkpoint at ``ckpt/`` holds the number of finished steps ``k``; on resume the loop
starts at step ``k``, metrics lines with ``step >= k`` and eval records of this stage with ``step > k``
are dropped first, so every step (and eval point) appears exactly once however often the process dies.
Evals at an eval point run before that point's checkpoint is written, which is why records at ``step == k``
are kept. Rank 0 writes every file; all ranks take part in checkpoint saving (sharded optimizers).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cascadec.contract.errors import UserError
from runtime.data import MixtureSampler
from runtime.evals import EvalSet, run_evals
from runtime.progress import StageProgress
from runtime.save_cadence import SaveCadence
from runtime.signals import StageStopped, stop_agreed
from runtime.state import (
    RunDir, append_jsonl, atomic_dir, atomic_write_json, commit_dir, filter_jsonl, read_jsonl, recover_dir,
    truncate_metrics,
)
from runtime.tracking import eval_rows, open_trackers

if TYPE_CHECKING:
    from cascadec.contract.plan import Stage
    from runtime.context import StageContext
    from runtime.stages import Trainer

CKPT_META = "meta.json"
TRAINER_STATE = "trainer.pt"
ACCEL_STATE = "accelerate"


# ------------------------------------------------------------------ checkpoints


class CheckpointError(UserError):
    """A resumable checkpoint that exists but cannot be read (edited, truncated or partly deleted by hand:
    the runtime itself only ever renames complete checkpoints into place)."""

    def __init__(self, ckpt: Path, err: BaseException) -> None:
        first = (str(err).strip().splitlines() or [""])[0]
        super().__init__(
            f"the checkpoint `{ckpt}` cannot be read ({type(err).__name__}: {first})\n"
            f"help: restore it, or delete it to restart this stage from step 0: rm -r '{ckpt}'"
        )


def checkpoint_step(ckpt: Path) -> int:
    """Finished steps recorded in a resumable checkpoint, or 0 when there is none.

    Raises CheckpointError when ``ckpt/`` exists but its ``meta.json`` is missing or malformed.
    """
    ckpt = recover_dir(ckpt)
    if ckpt is None:
        return 0
    try:
        step = json.loads((ckpt / CKPT_META).read_text())["step"]
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"`step` is {step!r}, not a count of finished steps")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(ckpt, e) from None
    return step


def _barrier(acc: Any) -> None:
    if acc.num_processes > 1:
        acc.wait_for_everyone()


class _TiedWeightsFilter(logging.Filter):
    """Drops accelerate's "Removed shared tensor ..." warning, which a model with tied input and output
    embeddings (SmolLM2, most small models) gets at every checkpoint: the tie is restored on load."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


@contextlib.contextmanager
def tied_weights_quiet(model: Any) -> Iterator[None]:
    """Silence the shared-tensor warning of ``accelerate.utils.other`` while saving ``model``, only when the
    model ties its embeddings (``config.tie_word_embeddings``): any other sharing still warns."""
    config = getattr(getattr(model, "module", model), "config", None)
    if not getattr(config, "tie_word_embeddings", False):
        yield
        return
    logger, quiet = logging.getLogger("accelerate.utils.other"), _TiedWeightsFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def save_checkpoint(ctx: StageContext, trainer: Trainer, done: int) -> None:
    """Write ``ckpt/`` for ``done`` finished steps: accelerate state (model, optimizer, scheduler, every
    rank's RNG), the trainer's extra state, the step. Written to ``ckpt.tmp-step<done>`` (a name every
    rank agrees on) and renamed by rank 0, so ``ckpt/`` is always complete."""
    acc = ctx.accelerator
    final = ctx.rundir.ckpt(ctx.stage.name)
    tmp = final.with_name(f"{final.name}.tmp-step{done}")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier(acc)
    with tied_weights_quiet(ctx.policy):
        acc.save_state(str(tmp / ACCEL_STATE))
    # Every rank writes its own files (RNG state, FSDP2 shards); rank 0 must not rename the folder while
    # another is still writing (seen on 2 H200s: "Parent directory .../accelerate does not exist").
    _barrier(acc)
    if acc.is_main_process:
        torch.save(trainer.state_dict(), tmp / TRAINER_STATE)
        atomic_write_json(tmp / CKPT_META, {"step": done, "stage": ctx.stage.name, "hash": ctx.stage.hash})
        commit_dir(tmp, final)
        ctx.rundir.update_stage(ctx.stage.name, step=done)
    _barrier(acc)


def load_checkpoint_state(ctx: StageContext, trainer: Trainer) -> int:
    """Restore ``ckpt/`` into the prepared objects and ``trainer``; returns the finished steps (0: none)."""
    ckpt = ctx.rundir.ckpt(ctx.stage.name)
    step = checkpoint_step(ckpt)
    if step == 0:
        return 0
    trainer_state = ckpt / TRAINER_STATE
    # A checkpoint that does not load is reported as such; a trainer bug while restoring stays a crash.
    try:
        ctx.accelerator.load_state(str(ckpt / ACCEL_STATE))
        state = torch.load(trainer_state, map_location="cpu", weights_only=False) if trainer_state.is_file() else None
    except Exception as e:
        raise CheckpointError(ckpt, e) from e
    if state is not None:
        trainer.load_state_dict(state)
    if ctx.engine is not None:
        # The engine was built from the stage's starting weights; one that decodes from its own copy (the
        # fast engine's bf16 copy, vLLM) would otherwise sample the first resumed step from them. A
        # collective under FSDP2: every rank runs it.
        ctx.engine.sync_weights(ctx.policy)
    return step


def save_final(ctx: StageContext, final: Path | None = None, *, model: Any = None,
               dtype: torch.dtype | None = None) -> Path:
    """Save the policy (or ``model``) and tokenizer in Hugging Face format to ``final/`` (or ``final``: a
    retention snapshot, the rollout server's copy) (atomic; rank 0 writes), floating tensors in ``dtype`` when
    given."""
    acc = ctx.accelerator
    model = ctx.policy if model is None else model
    state_dict = acc.get_state_dict(model)  # every rank: gathers ZeRO-3/FSDP shards
    final = final or ctx.rundir.final(ctx.stage.name)
    if acc.is_main_process:
        if dtype is not None:
            state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
        with atomic_dir(final) as tmp:
            acc.unwrap_model(model).save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            ctx.tokenizer.save_pretrained(tmp)
    _barrier(acc)
    return final


# ------------------------------------------------------------------ metrics


def reduce_metrics(per_rank: list[dict[str, Any]]) -> dict[str, float]:
    """Combine each rank's step metrics: throughputs (``*_per_s``) add up, peaks (``peak_*``) take the
    maximum, everything else is averaged."""
    out: dict[str, float] = {}
    def numeric(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    keys = sorted({k for m in per_rank for k, v in m.items() if numeric(v)})
    for key in keys:
        values = [float(m[key]) for m in per_rank if key in m]
        if key.endswith("_per_s"):
            out[key] = sum(values)
        elif key.startswith("peak_"):
            out[key] = max(values)
        else:
            out[key] = sum(values) / len(values)
    return out


def _gather_metrics(acc: Any, metrics: dict[str, Any]) -> dict[str, float]:
    if acc.num_processes == 1:
        return reduce_metrics([metrics])
    from accelerate.utils import gather_object

    return reduce_metrics(list(gather_object([metrics])))


# ------------------------------------------------------------------ the loop


def stage_evals(run_dir: RunDir, stage: str) -> list[dict]:
    return [r for r in read_jsonl(run_dir.evals_jsonl) if r.get("stage") == stage]


def drop_after(run_dir: RunDir, stage: str, resume_step: int) -> None:
    """Forget what a crashed attempt logged after its last checkpoint, and its half-written
    directories (rank 0 only)."""
    recover_dir(run_dir.final(stage))
    truncate_metrics(run_dir.metrics(stage), resume_step)
    filter_jsonl(run_dir.evals_jsonl, lambda r: r.get("stage") != stage or int(r.get("step", 0)) <= resume_step)


def _teacher_scores(ctx: StageContext) -> dict:
    if not any(c.relative_to for c in ctx.stage.until):
        return {}
    from runtime.teachers import recorded_teacher_scores, resolve_teachers

    return recorded_teacher_scores(resolve_teachers(ctx.plan, ctx.stage, ctx.run_dir), ctx.run_dir)


def run_stage(ctx: StageContext, trainer: Trainer, sampler: MixtureSampler, eval_sets: list[EvalSet]) -> str | None:
    """Run steps ``[ctx.start_step, params.steps)`` of ``ctx.stage``; returns the stop reason or None.

    Each rank trains on its strided shard ``batch[rank::world]`` of the global batch; a trainer with
    ``nothing_to_learn`` takes no step, and that reason is the stop reason. On return the
    stage's ``final/`` exists, its final evals are recorded and ``state.json`` marks it done.
    """
    from runtime.stop import exhausted, should_stop

    acc, stage, rd = ctx.accelerator, ctx.stage, ctx.rundir
    total = stage.params.steps
    main = acc.is_main_process
    trackers = open_trackers(ctx.plan, stage, rd, ctx.start_step) if main else None
    progress = StageProgress(stage.name, ctx.start_step, total, enabled=main)
    teacher_scores = _teacher_scores(ctx)
    reason: str | None = getattr(trainer, "nothing_to_learn", None)
    if reason:
        progress.note(f"[{stage.name}] {reason}")
    done = ctx.start_step
    cadence = SaveCadence(stage.checkpoint_every(total), bounded=stage.save_every is None)
    finished = False
    try:
        for step in range(ctx.start_step, 0 if reason else total):
            batch = sampler.batch(step)[acc.process_index :: acc.num_processes]
            lr = ctx.optimizer.param_groups[0]["lr"]  # the rate this step trains at
            cuda = acc.device.type == "cuda"
            if cuda:
                torch.cuda.reset_peak_memory_stats(acc.device)
            t0 = time.perf_counter()
            local = trainer.step(step, batch)
            local["step_time_s"] = time.perf_counter() - t0
            if cuda:
                # The step's peak of this rank's allocator (GiB); the merge keeps the largest rank's.
                local["peak_mem_gib"] = torch.cuda.max_memory_allocated(acc.device) / 2**30
            metrics = _gather_metrics(acc, local)
            metrics["lr"] = lr
            done = step + 1
            if main:
                append_jsonl(rd.metrics(stage.name), {"step": step, **metrics})
                trackers.log("train", metrics, step)
                progress.update(step, metrics)
            signum = stop_agreed(acc)
            if signum:
                # Preempted or interrupted: keep the finished steps; the resumed stage starts at `done`.
                save_checkpoint(ctx, trainer, done)
                raise StageStopped(done, signum)
            if done == total:
                break
            if stage.eval_every and done % stage.eval_every == 0:
                _record_evals(ctx, eval_sets, done, trackers, progress)
            if stage.until:
                reason = should_stop(stage.until, stage_evals(rd, stage.name) if main else [], done, teacher_scores,
                                     {"step": step, **metrics})
                reason = broadcast_from_main(acc, reason)
                if reason:
                    progress.note(f"[{stage.name}] stopping at step {done}: {reason}")
                    break
            if cadence.point(done) and broadcast_from_main(acc, cadence.due()):
                cadence.write(lambda: save_checkpoint(ctx, trainer, done))
            if stage.keep is not None and _retention_point(stage, done, total):
                snapshot(ctx, done)
        progress.close()
        save_final(ctx)
        _record_evals(ctx, eval_sets, done, trackers, progress)
        if trackers is not None:
            trackers.table(eval_rows(rd))
        finished = True
        if reason is None and main:
            reason = exhausted(stage.until, stage_evals(rd, stage.name), done, teacher_scores)
    finally:
        progress.close()
        if trackers is not None:
            trackers.close(ok=finished)
    if main:
        rd.update_stage(
            stage.name, status="done", step=done, stop_reason=reason,
            checkpoint=str(Path("stages") / stage.name / "final"),
        )
        # The resumable checkpoint (weights + optimizer state) is dead weight once final/ is done.
        shutil.rmtree(rd.ckpt(stage.name), ignore_errors=True)
    _barrier(acc)
    return reason


def _retention_point(stage: Stage, done: int, total: int) -> bool:
    return any(every and done % every == 0 for every in (stage.checkpoint_every(total), stage.eval_every))


def snapshot(ctx: StageContext, done: int) -> None:
    """A retention snapshot at ``done`` finished steps, then pruning by the stage's ``keep`` rule
    (:mod:`runtime.retention`); scores are this stage's records of the rule's eval."""
    from runtime.retention import prune, snapshot_dir

    stage_dir = ctx.rundir.stage_dir(ctx.stage.name)
    save_final(ctx, snapshot_dir(stage_dir, done))
    if ctx.accelerator.is_main_process:
        rule = ctx.stage.keep
        scores = None
        if rule.domain:
            scores = {int(r["step"]): float(r["score"]) for r in stage_evals(ctx.rundir, ctx.stage.name)
                      if r.get("domain") == rule.domain and r.get("eval") == rule.eval}
        prune(stage_dir, rule.last, scores)
    _barrier(ctx.accelerator)


def _record_evals(ctx: StageContext, eval_sets: list[EvalSet], done: int, trackers: Any,
                  progress: StageProgress) -> None:
    """Run every eval at ``done`` finished steps; rank 0 appends the records to ``evals.jsonl``, sends them to
    the trackers (``eval/<domain>.<eval>``) and prints them."""
    name = ctx.stage.name
    records = run_evals(ctx, eval_sets, stage=name, step=done, seed=ctx.stage.seed + done)
    if not ctx.accelerator.is_main_process:
        return
    for r in records:
        append_jsonl(ctx.rundir.evals_jsonl, r)
        progress.note(f"[{name}] eval at step {done}: {r['domain']}.{r['eval']} {r['metric']} = {r['score']:.3f}")
    trackers.log("eval", {f"{r['domain']}.{r['eval']}": r["score"] for r in records}, done)


def broadcast_from_main(acc: Any, value: Any) -> Any:
    """Rank 0's value on every rank (only rank 0 reads the run directory's files)."""
    if acc.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]
