"""One on-policy distillation step, cascadec against TRL's DistillationTrainer, on the same GPU in one run.

Setting (issue 6): student and teacher of one random-weight shape (default SmolLM2-135M; the teacher is
the student's initial weights, frozen, in bf16), fp32 master weights with bf16 autocast for the student,
``--prompts`` prompts x 1 rollout x ``--new`` completion tokens forced to full length, temperature 1, one
optimizer step per rollout batch.

Runs (each in its own process, one after the other):

* ``cascadec-fast-reverse_kl``: the runtime's distill trainer (``runtime.stages.distill.DistillTrainer``)
  with ``loss = reverse_kl`` over the full vocabulary (TRL's objective at ``beta = 1``) and the fast
  rollout engine;
* ``cascadec-fast-mopd``: the same trainer with MOPD (Nemotron-Cascade 2 §4.4: teacher log-prob of each
  sampled token, truncated importance weights), the stage kind cascadec is built for;
* ``cascadec-hf-reverse_kl``: reverse KL with the runtime's default transformers engine;
* ``trl``: ``trl.DistillationTrainer`` (on-policy, ``beta = 1`` reverse KL over the full vocabulary,
  transformers ``generate``), ``per_device_train_batch_size`` = prompts, ``min_new_tokens`` = ``--new``.

Usage (from the repository root)::

    python -m bench.distill_vs_trl --shape smollm2-135m --steps 5 --warmup 2 --out bench/results/distill.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from bench import gpu_common as common

TEACHER = "teacher"
RUNS = ("cascadec-fast-reverse_kl", "cascadec-fast-mopd", "cascadec-hf-reverse_kl", "trl")


def make_plan(args: argparse.Namespace, tok_dir: Path, prompts: list[str], loss: str):
    """A one-stage distill plan (teacher: the base model) over an inline domain of the prompts."""
    from cascadec.contract.plan import (
        DataSource,
        DistillParams,
        Domain,
        ModelRef,
        Optim,
        Plan,
        Resources,
        RewardSpec,
        Schedule,
        Stage,
        TeacherRef,
    )

    shape = common.MODEL_SHAPES[args.shape]
    base = ModelRef(kind="tiny", name=shape["family"], config=shape["config"], tokenizer=str(tok_dir))
    domain = Domain(name="bench", train=DataSource(kind="inline", rows=[{"prompt": p} for p in prompts]),
                    reward=RewardSpec(kind="py", args={"fn": "bench.gpu_common:length_reward"}))
    params = DistillParams(optim=Optim(lr=Schedule(peak=1e-6)), steps=args.steps, prompts_per_step=args.prompts,
                           rollouts_per_prompt=1, micro_batch=args.micro_batch, max_response=args.new,
                           temperature=1.0, loss=loss)
    stage = Stage(name="distill", kind="distill", parent="base", domains={"bench": 1.0}, params=params,
                  teachers={"default": TeacherRef(kind="stage", stage=TEACHER)},
                  resources=Resources(device=args.device, precision="bf16" if common.uses_bf16(args) else "fp32",
                                      gradient_checkpointing=args.gradient_checkpointing))
    return Plan(name="bench-distill", base=base, domains={"bench": domain}, stages=[stage],
                checkpoints={TEACHER: teacher_copy(base)})


def teacher_copy(base) -> Any:
    """The base model saved as a checkpoint directory (a ``path`` model), to name as the teacher: a stage whose
    every teacher is its own start (``base``) has nothing to distil and takes no step
    (``runtime.teachers.nothing_to_distil``), though a copy of the same weights is the same arithmetic."""
    from cascadec.contract.plan import ModelRef
    from runtime.models import load_model

    directory = common.scratch_dir("bench-teacher-")
    model, tokenizer = load_model(base)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return ModelRef(kind="path", name=str(directory))


def run_cascadec(args: argparse.Namespace, tok_dir: Path, prompts: list[str], engine: str, loss: str) -> dict[str, Any]:
    from runtime.data import load_domains
    from runtime.entry import build_context
    from runtime.rollout.fast import FastRolloutEngine
    from runtime.stages.distill import DistillTrainer
    from runtime.state import RunDir

    plan = make_plan(args, tok_dir, prompts, loss)
    ctx = build_context(plan, plan.stages[0], RunDir(common.scratch_dir("cascadec-distill-")))
    if engine == "fast":
        ctx.engine = FastRolloutEngine(ctx.policy, ctx.tokenizer, dtype=ctx.dtype, suppress_eos=True)
    profiler = common.UpdateProfiler()
    ctx.engine.generate = profiler.wrap(ctx.engine.generate)
    trainer = DistillTrainer(ctx)
    batch = load_domains([("bench", plan.domains["bench"].train)])["bench"][: args.prompts]
    prompt_tokens = sum(len(ctx.tokenizer(ctx.render_prompt(s), add_special_tokens=False)["input_ids"]) for s in batch)
    params = common.param_count(ctx.unwrapped_policy())
    steps = []
    for step in range(args.steps):
        common.reset_peak_memory()
        timer = common.CudaTimer()
        with timer.phase("step"), profiler.step(args.profile and step == args.steps - 1):
            metrics = trainer.step(step, batch)
        gen_tokens = metrics["response_len"] * args.prompts
        steps.append({
            "step_s": timer.totals["step"], "gen_s": metrics["gen_s"], "teacher_s": metrics["teacher_s"],
            "train_s": metrics["train_s"], "gen_tokens": gen_tokens, "update_tokens": gen_tokens + prompt_tokens,
            "peak_mem_gib": common.peak_memory_gib(), "loss": metrics["loss"],
            "engine_timing": dict(getattr(ctx.engine, "last_timing", {}) or {}),
        })
        if profiler.table is not None:
            steps[-1]["profile_top"], profiler.table = profiler.table, None
        print(f"[cascadec-{engine}-{loss}] step {step}: {steps[-1]['step_s']:.3f} s (gen {metrics['gen_s']:.3f}, "
              f"teacher {metrics['teacher_s']:.3f}, train {metrics['train_s']:.3f})", flush=True)
    return common.summarise(f"cascadec-{engine}-{loss}", steps, args.warmup, params)


def run_trl(args: argparse.Namespace, tok_dir: Path, prompts: list[str]) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import DistillationConfig, DistillationTrainer

    from runtime.models import load_model

    plan = make_plan(args, tok_dir, prompts, "reverse_kl")
    student, _ = load_model(plan.base, seed=plan.seed)
    teacher_dtype = torch.bfloat16 if common.uses_bf16(args) else torch.float32
    teacher, _ = load_model(plan.base, dtype=teacher_dtype, seed=plan.seed)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    tokenizer.padding_side = "left"
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                              add_generation_prompt=True) for p in prompts[: args.prompts]]
    prompt_tokens = sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in rendered)
    dataset = Dataset.from_dict({"prompt": rendered * (args.steps + 1)})
    config = DistillationConfig(
        output_dir=str(common.scratch_dir("trl-distill-")), per_device_train_batch_size=args.prompts,
        max_completion_length=args.new, beta=1.0, bf16=common.uses_bf16(args), learning_rate=1e-6,
        max_steps=args.steps, logging_steps=1, report_to="none", save_strategy="no", temperature=1.0,
        use_vllm=False, gradient_accumulation_steps=1, generation_kwargs={"min_new_tokens": args.new},
        shuffle_dataset=False, seed=0, use_cpu=args.device == "cpu",
        gradient_checkpointing=args.gradient_checkpointing,
    )
    timer = common.CudaTimer()
    profiler = common.UpdateProfiler()
    steps: list[dict[str, float]] = []

    class StepTimes(TrainerCallback):
        def on_step_begin(self, *_, **__):
            common.reset_peak_memory()
            common.synchronize()
            if args.profile and len(steps) == args.steps - 1:
                profiler.start()
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            common.synchronize()
            end = time.perf_counter()
            profiler.stop()
            phases = timer.pop()
            gen_tokens = args.prompts * args.new
            steps.append({"step_s": end - self.start, "gen_s": phases.get("gen", 0.0),
                          "gen_tokens": gen_tokens, "update_tokens": gen_tokens + prompt_tokens,
                          "peak_mem_gib": common.peak_memory_gib()})
            print(f"[trl] step {len(steps) - 1}: {steps[-1]['step_s']:.3f} s (gen {steps[-1]['gen_s']:.3f})",
                  flush=True)

    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=config, train_dataset=dataset,
                                  processing_class=tokenizer, callbacks=[StepTimes()])
    generate = trainer._generate

    def timed_generate(*a, **kw):
        with timer.phase("gen"):
            return generate(*a, **kw)

    trainer._generate = profiler.wrap(timed_generate)
    trainer.train()
    if profiler.table is not None:
        steps[-1]["profile_top"] = profiler.table
    summary = common.summarise("trl", steps, args.warmup, common.param_count(student))
    summary["log_history"] = trainer.state.log_history
    return summary


def run_one(args: argparse.Namespace, tok_dir: Path, prompts: list[str]) -> dict[str, Any]:
    if args.run == "trl":
        return run_trl(args, tok_dir, prompts)
    _, engine, loss = args.run.split("-", 2)
    return run_cascadec(args, tok_dir, prompts, engine=engine, loss=loss)


def main() -> None:
    ap = common.argument_parser(__doc__, RUNS, "bench/results/distill_vs_trl.json", prompts=128, micro_batch=32)
    common.main(ap, "bench.distill_vs_trl", "distill", run_one)


if __name__ == "__main__":
    main()
