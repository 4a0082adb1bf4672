"""The torchrun entry point of one stage: ``python -m runtime.entry --plan P --stage S --run-dir D``.

Builds the ``StageContext`` (accelerate, the policy from the parent's ``final/`` or the base model, AdamW,
the LR schedule, rewards, the rollout engine), resumes from ``ckpt/`` when one exists and runs
``runtime.loop.run_stage``. ``--stage base`` evaluates the base model instead (the first column of the
score table).

Exit status: 0 done; 2 a user error (bad data, a model that cannot be loaded, a reward that raises, ...),
printed as ``error: ...`` with a ``help:`` line; 1 an internal error, whose traceback goes to the stage
log (``stages/S/stage.log``) with a one-line summary on stderr. Either way the run stays resumable.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cascadec.contract.errors import UserError
from cascadec.contract.plan import Plan, Resources, Stage
from runtime.context import (
    StageContext, build_optimizer, build_scheduler, load_plugins, trainer_class,
)
from runtime.data import DataError, MixtureSampler, load_domains
from runtime.host_memory import keep_freed_memory
from runtime.models import ModelLoadError, load_checkpoint, load_model
from runtime.precision import mixed_precision
from runtime.rollout import build_engine
from runtime.signals import STOP, StageStopped
from runtime.state import BASE, RunDir, append_jsonl, atomic_write_text, filter_jsonl

EXIT_USER_ERROR = 2


class StageError(UserError):
    """A user-facing problem with the stage setup (device, parent checkpoint, ...)."""


# ------------------------------------------------------------------ pieces of the context


def make_accelerator(resources: Resources) -> Any:
    """An Accelerator for the stage's resources: gloo on CPU, NCCL on CUDA, bf16 autocast where
    ``runtime.precision.mixed_precision`` says (CUDA, or a CPU with bf16 units), DeepSpeed ZeRO-1/2/3
    (CUDA only) or FSDP2 when the strategy asks for them.

    FSDP2 (torch ``fully_shard``) also runs on CPU processes started by torchrun (a gloo mesh; 1 or more
    ranks), which is how its code paths are tested without a GPU; a CPU run without torchrun has no
    process group and trains unsharded.

    Raises StageError when the plan asks for CUDA on a machine without it, PrecisionError for
    ``precision = bf16`` on a CPU without bf16 instructions.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, InitProcessGroupKwargs

    has_cuda = torch.cuda.is_available()
    if resources.device == "cuda" and not has_cuda:
        raise StageError("the stage asks for `device = cuda` but no CUDA device is visible\n"
                         "help: run on a GPU machine or set `device = cpu` (or `auto`)")
    cuda = has_cuda and resources.device != "cpu"
    kwargs: dict[str, Any] = {"cpu": not cuda}
    if not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Without an explicit backend accelerate on CPU may not join the torchrun group, and every rank
        # then believes it is rank 0.
        kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]
    kwargs["mixed_precision"] = mixed_precision(resources.precision, cuda=cuda)
    fsdp_plugin = None
    if cuda and resources.strategy.startswith("zero"):
        from accelerate.utils import DeepSpeedPlugin

        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(zero_stage=int(resources.strategy[-1]),
                                                     gradient_clipping=None)
    elif resources.strategy == "fsdp2":
        from accelerate.utils import FullyShardedDataParallelPlugin

        # One FSDP unit per decoder layer (the model's `_no_split_modules`), resharded after each forward:
        # said here, not only in launch.sh's environment, because without a wrap policy the whole model is
        # one unit that stays gathered after the forward (no memory saved, and a different collective pattern).
        fsdp_plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
                                                     reshard_after_forward=True)
        if cuda:
            kwargs["fsdp_plugin"] = fsdp_plugin
    acc = Accelerator(**kwargs)
    if fsdp_plugin is not None and not cuda and acc.distributed_type == DistributedType.MULTI_CPU:
        # accelerate 1.15 honours an FSDP plugin only on accelerator devices, but torch's fully_shard runs
        # on a gloo CPU mesh too: switch the shared state to FSDP so that `prepare` shards the model. The
        # process state is switched as well: every later AcceleratorState() copies its distributed type.
        from accelerate.state import PartialState

        PartialState().distributed_type = DistributedType.FSDP
        acc.state.distributed_type = DistributedType.FSDP
        acc.state.fsdp_plugin = fsdp_plugin
    return acc


class GuardedReward:
    """A domain's reward whose failures become a RewardError naming the domain, and whose output is
    checked: one finite float per completion, or NaN (no reward) when the reward routes by a field and the
    row has no route (``routed``; :mod:`runtime.routing`)."""

    def __init__(self, domain: str, reward: Any, routed: bool = False) -> None:
        self.domain, self.reward, self.routed = domain, reward, routed

    def __call__(self, samples: Sequence[Any], completions: Sequence[str]) -> list[float]:
        from runtime.rewards.base import RewardError

        try:
            values = self.reward(samples, completions)
        except RewardError:
            raise
        except Exception as e:
            raise RewardError(
                f"the reward of domain `{self.domain}` raised {type(e).__name__}: {str(e).strip() or '(no message)'}",
                hint="fix the reward; `cascadec run` then resumes from the last checkpoint",
            ) from e
        values = [float(v) for v in values]
        if len(values) != len(completions) or not all(math.isfinite(v) or (self.routed and math.isnan(v))
                                                      for v in values):
            raise RewardError(
                f"the reward of domain `{self.domain}` returned {len(values)} values for {len(completions)} "
                "completions, or a value that is not finite",
                hint="return one finite float per completion",
            )
        return values


def build_rewards(plan: Plan) -> dict[str, GuardedReward]:
    """Every domain's reward (evals score all domains, not only the ones a stage trains on); a domain without
    one (only distilled or fine-tuned on, no evals: CAS306) has none here."""
    from runtime.rewards import build_reward

    from runtime.routing import routes_by_field

    return {name: GuardedReward(name, build_reward(d.reward, domain=d), routed=routes_by_field(d.reward))
            for name, d in sorted(plan.domains.items()) if d.reward is not None}


def load_policy(plan: Plan, stage: Stage, run_dir: RunDir) -> tuple[Any, Any]:
    """The stage's starting weights: the parent's ``final/`` checkpoint, a named external checkpoint, or the
    base model."""
    if stage.parent == BASE:
        return load_model(plan.base, seed=plan.seed)
    if stage.parent in plan.checkpoints:
        from runtime.external import load_external

        return load_external(stage.parent, plan.checkpoints[stage.parent])
    final = run_dir.final(stage.parent)
    if not (final / "config.json").is_file():
        raise StageError(
            f"stage `{stage.name}` starts from `{stage.parent}`, which has no final checkpoint at `{final}`\n"
            f"help: run the whole cascade (`cascadec run`), which runs `{stage.parent}` first"
        )
    return load_checkpoint(final)


def build_context(plan: Plan, stage: Stage, run_dir: RunDir, *, train: bool = True) -> StageContext:
    """Build one rank's StageContext. With ``train=False`` (base-model evals) there is no optimizer."""
    from accelerate.utils import set_seed

    acc = make_accelerator(stage.resources)
    if acc.device.type == "cpu":
        keep_freed_memory()
    # device_specific: each rank gets its own stream, so ranks do not sample identical rollouts. numpy takes
    # seeds below 2^32 and the spec allows up to 2^63 - 1: fold (identity for every seed below 2^32 - 2^16,
    # which leaves room for accelerate's per-rank offset).
    set_seed((plan.seed + stage.seed) % (2**32 - 2**16), device_specific=True)
    # Rank 0 first: a packaged model is converted into the shared cache once, then read by the others.
    with acc.main_process_first():
        if train:
            policy, tokenizer = load_policy(plan, stage, run_dir)
        else:
            policy, tokenizer = load_model(plan.base, seed=plan.seed)
    if stage.resources.gradient_checkpointing and train:
        policy.gradient_checkpointing_enable()
    dtype = torch.bfloat16 if acc.mixed_precision == "bf16" else torch.float32
    optimizer = scheduler = None
    if train:
        optimizer = build_optimizer(policy.parameters(), stage.params.optim)
        scheduler = build_scheduler(optimizer, stage.params.optim.lr, stage.params.steps)
        policy, optimizer = acc.prepare(policy, optimizer)
        # Not prepared: accelerate would step it once per process per call; checkpointed all the same.
        acc.register_for_checkpointing(scheduler)
    else:
        policy = policy.to(acc.device).eval()
    ctx = StageContext(
        plan=plan, stage=stage, run_dir=run_dir.root, accelerator=acc, device=acc.device, dtype=dtype,
        policy=policy, tokenizer=tokenizer, optimizer=optimizer, scheduler=scheduler,
        rewards=build_rewards(plan),
    )
    ctx.engine = build_engine(ctx)
    return ctx


def extra_prompts(data: dict, weights: dict, stage: Stage, plan_seed: int, acc: Any) -> Any:
    """Dynamic sampling's further prompts: ``(step, attempt) -> this rank's shard`` of batch
    ``step * (budget - 1) + attempt - 1`` of a mixture stream with its own seed, so every (step, attempt)
    draws its own prompts deterministically (a resumed run draws the same ones). None without a budget."""
    budget = getattr(stage.params, "sampling_budget", 1)
    if budget <= 1:
        return None
    stream = MixtureSampler(data, weights, stage.params.rows_per_step, seed=(plan_seed + stage.seed) * 7_919 + 1)

    def resample(step: int, attempt: int) -> list:
        return stream.batch(step * (budget - 1) + attempt - 1)[acc.process_index :: acc.num_processes]

    return resample


# ------------------------------------------------------------------ the two jobs


def with_total_steps(stage: Stage, rows: int) -> Stage:
    """``stage`` with ``params.steps`` resolved for a training set of ``rows`` rows (``epochs``: one epoch is
    every row of the stage's domains once; see ``StageParamsBase.total_steps``)."""
    total = stage.params.total_steps(rows)
    return stage.model_copy(update={"params": stage.params.model_copy(update={"steps": total})})


def training_rows(plan: Plan, stage: Stage, run_dir: RunDir, eval_sets: list) -> dict[str, list]:
    """The rows of each domain ``stage`` trains on, decontaminated where its domain says
    (``runtime.decontaminate``). Rank 0 prints what was dropped (stdout for the user, stderr for the stage log)
    and records it in ``state.json`` (the stage's ``decontaminated``). Raises DataError for bad data or a
    domain whose evals cover all its rows."""
    from runtime.decontaminate import decontaminate_domains

    weights = stage.domains or {}
    data = load_domains([(d, plan.domains[d].train) for d in sorted(weights) if weights[d] > 0])
    data, reports = decontaminate_domains(plan, data, eval_sets)
    if reports and int(os.environ.get("RANK", "0")) == 0:
        for r in reports:
            for stream in (sys.stdout, sys.stderr):
                print(f"[{stage.name}] {r.line()}", file=stream, flush=True)
        run_dir.update_stage(stage.name, decontaminated={r.domain: r.record() for r in reports})
    return data


def train_stage(plan: Plan, stage: Stage, run_dir: RunDir) -> str | None:
    """Run (or resume) one stage to completion; returns its stop reason."""
    from runtime.evals import load_eval_sets
    from runtime.loop import broadcast_from_main, checkpoint_step, drop_after, load_checkpoint_state, run_stage

    weights = stage.domains or {}
    eval_sets = load_eval_sets(plan)
    data = training_rows(plan, stage, run_dir, eval_sets)
    stage = with_total_steps(stage, sum(len(rows) for rows in data.values()))
    order = {d: (plan.domains[d].train.shuffle, plan.domains[d].train.seed) for d in data}
    sampler = MixtureSampler(data, weights, stage.params.rows_per_step, seed=plan.seed + stage.seed, order=order)
    ctx = build_context(plan, stage, run_dir)
    ctx.resample = extra_prompts(data, weights, stage, plan.seed, ctx.accelerator)
    ctx.start_step = broadcast_from_main(
        ctx.accelerator, checkpoint_step(run_dir.ckpt(stage.name)) if ctx.is_main else 0
    )
    trainer = trainer_class(stage.kind)(ctx)
    if ctx.start_step > 0:
        resumed = load_checkpoint_state(ctx, trainer)
        if resumed != ctx.start_step:
            raise RuntimeError(f"checkpoint step changed while resuming ({ctx.start_step} -> {resumed})")
    if ctx.is_main:
        drop_after(run_dir, stage.name, ctx.start_step)
        if ctx.start_step:
            print(f"[{stage.name}] resuming at step {ctx.start_step}/{stage.params.steps}", flush=True)
    return run_stage(ctx, trainer, sampler, eval_sets)


def eval_base(plan: Plan, run_dir: RunDir) -> None:
    """Evaluate the base model on every domain's evals; records go to ``evals.jsonl`` as stage ``base``."""
    from runtime.evals import load_eval_sets, run_evals

    if not plan.stages:
        return
    eval_sets = load_eval_sets(plan)
    records, main = [], int(os.environ.get("RANK", "0")) == 0
    if eval_sets:  # else no model and no engine are built (a rollout server is not started for nothing)
        ctx = build_context(plan, plan.stages[0], run_dir, train=False)
        records, main = run_evals(ctx, eval_sets, stage=BASE, step=0, seed=plan.seed), ctx.is_main
    if main:
        filter_jsonl(run_dir.evals_jsonl, lambda r: r.get("stage") != BASE)
        for r in records:
            append_jsonl(run_dir.evals_jsonl, r)


def _configure_threads() -> None:
    # Share the CPU cores between the ranks of this host instead of oversubscribing them.
    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(max(1, int(os.environ["OMP_NUM_THREADS"])))
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def _quiet_libraries() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _log_traceback(run_dir: RunDir, stage: str, rank: int, err: BaseException) -> Path:
    """Append ``err``'s traceback to the stage log; returns the log's path."""
    log = run_dir.log(stage)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"--- rank {rank}\n{''.join(traceback.format_exception(err))}")
    return log


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.entry", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, type=Path, help="plan.json of the build")
    parser.add_argument("--stage", required=True, help="stage name, or `base` to evaluate the base model")
    parser.add_argument("--run-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    run_dir = RunDir(args.run_dir)
    rank = int(os.environ.get("RANK", "0"))
    _configure_threads()
    _quiet_libraries()
    try:
        load_plugins()
    except Exception as e:
        print(f"error: cannot load runtime plugins: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        plan = Plan.from_json(args.plan.read_text())
        if args.stage != BASE and args.stage not in {s.name for s in plan.stages}:
            raise StageError(f"the plan has no stage `{args.stage}`\nhelp: stages: "
                             + ", ".join(f"`{s.name}`" for s in plan.stages))
        if args.stage == BASE:
            eval_base(plan, run_dir)
        else:
            with STOP.installed():
                train_stage(plan, plan.stage(args.stage), run_dir)
    except StageStopped as e:
        print(f"[{args.stage}] {e}", file=sys.stderr, flush=True)
        if rank == 0:
            # torchrun reports a worker's exit status 143 as its own 1; the launcher reads this instead.
            run_dir.update_stage(args.stage, stopped_by=e.signum)
        return e.exit_status
    except UserError as e:
        message = f"stage `{args.stage}`: {e}"
        if e.__cause__ is not None:
            # The cause is user code (a reward function, a checkpoint loader): its traceback is what the
            # user needs to fix it, so it goes to the stage log and the message says where.
            log = _log_traceback(run_dir, args.stage, rank, e.__cause__)
            message += f"\n  (traceback of the {type(e.__cause__).__name__} in {log})"
        # Every rank reports: the failing rank may not be rank 0. stderr goes to the stage log; the
        # orchestrator shows the error file.
        print(f"error: {message}", file=sys.stderr, flush=True)
        atomic_write_text(run_dir.error_file(args.stage), message + "\n")
        return EXIT_USER_ERROR
    except Exception as e:
        log = _log_traceback(run_dir, args.stage, rank, e)
        message = f"stage `{args.stage}` crashed on rank {rank}: {type(e).__name__}: {e} (traceback in {log})"
        print(f"error: {message}", file=sys.stderr, flush=True)
        atomic_write_text(run_dir.error_file(args.stage), message + "\n")
        return 1
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
