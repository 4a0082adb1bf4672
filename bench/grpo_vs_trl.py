"""One GRPO step, cascadec against TRL's GRPOTrainer, on the same GPU in one run.

Setting (issue 6): a random-weight model of a named shape (default SmolLM2-135M), fp32 master weights with
bf16 autocast, ``--prompts`` prompts x ``--group`` rollouts x ``--new`` completion tokens forced to full
length (EOS suppressed), temperature 1, no KL (beta 0), one optimizer step per rollout batch, AdamW.

Runs (each in its own process, one after the other, so accelerate's global state and CUDA memory start
fresh):

* ``cascadec-fast``: the runtime's GRPO trainer (``runtime.stages.grpo.GRPOTrainer``: rewards, group
  advantages, chunked log-probs, GRPO loss, AdamW step, built by ``runtime.entry.build_context``) with the
  fast rollout engine (``runtime.rollout.fast``: static KV cache, CUDA-graph decode);
* ``cascadec-hf``: the same trainer with the runtime's default transformers engine;
* ``trl``: ``trl.GRPOTrainer`` with transformers ``generate`` (no vLLM), ``per_device_train_batch_size``
  = prompts x group, ``min_new_tokens`` = ``--new``.

Usage (from the repository root)::

    python -m bench.grpo_vs_trl --shape smollm2-135m --steps 5 --warmup 2 --out bench/results/grpo.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench import gpu_common as common

RUNS = ("cascadec-fast", "cascadec-hf", "trl")


def make_plan(args: argparse.Namespace, tok_dir: Path, prompts: list[str]):
    """A one-stage GRPO plan over an inline domain of the benchmark prompts."""
    from cascadec.contract.plan import (
        DataSource,
        Domain,
        GRPOParams,
        ModelRef,
        Optim,
        Plan,
        Resources,
        RewardSpec,
        Schedule,
        Stage,
    )

    shape = common.MODEL_SHAPES[args.shape]
    domain = Domain(name="bench", train=DataSource(kind="inline", rows=[{"prompt": p} for p in prompts]),
                    reward=RewardSpec(kind="py", args={"fn": "bench.gpu_common:length_reward"}))
    params = GRPOParams(optim=Optim(lr=Schedule(peak=1e-6)), steps=args.steps, prompts_per_step=args.prompts,
                        rollouts_per_prompt=args.group, micro_batch=args.micro_batch, max_response=args.new,
                        temperature=1.0, kl=0.0)
    stage = Stage(name="grpo", kind="grpo", parent="base", domains={"bench": 1.0}, params=params,
                  resources=Resources(device=args.device, precision="bf16" if common.uses_bf16(args) else "fp32",
                                      gradient_checkpointing=args.gradient_checkpointing))
    base = ModelRef(kind="tiny", name=shape["family"], config=shape["config"], tokenizer=str(tok_dir))
    return Plan(name="bench-grpo", base=base, domains={"bench": domain}, stages=[stage])


def run_cascadec(args: argparse.Namespace, tok_dir: Path, prompts: list[str], engine: str) -> dict[str, Any]:
    from runtime.data import load_domains
    from runtime.entry import build_context
    from runtime.rollout.fast import FastRolloutEngine
    from runtime.stages.grpo import GRPOTrainer
    from runtime.state import RunDir

    plan = make_plan(args, tok_dir, prompts)
    stage = plan.stages[0]
    ctx = build_context(plan, stage, RunDir(common.scratch_dir("cascadec-grpo-")))
    if engine == "fast":
        ctx.engine = FastRolloutEngine(ctx.policy, ctx.tokenizer, dtype=ctx.dtype, suppress_eos=True)
    profiler = common.UpdateProfiler()
    ctx.engine.generate = profiler.wrap(ctx.engine.generate)
    trainer = GRPOTrainer(ctx)
    batch = load_domains([("bench", plan.domains["bench"].train)])["bench"][: args.prompts]
    prompt_tokens = sum(len(ctx.tokenizer(ctx.render_prompt(s), add_special_tokens=False)["input_ids"]) for s in batch)
    params = common.param_count(ctx.unwrapped_policy())
    steps = []
    for step in range(args.steps):
        common.reset_peak_memory()
        timer = common.CudaTimer()
        with timer.phase("step"), profiler.step(args.profile and step == args.steps - 1):
            metrics = trainer.step(step, batch)
        rows = args.prompts * args.group
        gen_tokens = metrics["response_len"] * rows
        steps.append({
            "step_s": timer.totals["step"], "gen_s": metrics["gen_s"], "train_s": metrics["train_s"],
            "gen_tokens": gen_tokens, "update_tokens": gen_tokens + prompt_tokens * args.group,
            "peak_mem_gib": common.peak_memory_gib(), "loss": metrics["loss"],
            "engine_timing": dict(getattr(ctx.engine, "last_timing", {}) or {}),
        })
        if profiler.table is not None:
            steps[-1]["profile_top"], profiler.table = profiler.table, None
        print(f"[cascadec-{engine}] step {step}: {steps[-1]['step_s']:.3f} s (gen {metrics['gen_s']:.3f})",
              flush=True)
    return common.summarise(f"cascadec-{engine}", steps, args.warmup, params)


def run_trl(args: argparse.Namespace, tok_dir: Path, prompts: list[str]) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from runtime.models import load_model

    plan = make_plan(args, tok_dir, prompts)
    model, _ = load_model(plan.base, seed=plan.seed)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    tokenizer.padding_side = "left"
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                              add_generation_prompt=True) for p in prompts[: args.prompts]]
    prompt_tokens = sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in rendered)
    dataset = Dataset.from_dict({"prompt": rendered * (args.steps + 1)})
    config = GRPOConfig(
        output_dir=str(common.scratch_dir("trl-grpo-")), per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group, max_completion_length=args.new, beta=0.0, bf16=common.uses_bf16(args), learning_rate=1e-6,
        max_steps=args.steps, logging_steps=1, report_to="none", save_strategy="no", temperature=1.0,
        use_vllm=False, gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1,
        generation_kwargs={"min_new_tokens": args.new}, shuffle_dataset=False, seed=0, use_cpu=args.device == "cpu",
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
            steps.append({"step_s": end - self.start, "gen_s": phases.get("gen", 0.0),
                          "gen_tokens": args.prompts * args.group * args.new,
                          "update_tokens": args.prompts * args.group * args.new + prompt_tokens * args.group,
                          "peak_mem_gib": common.peak_memory_gib()})
            print(f"[trl] step {len(steps) - 1}: {steps[-1]['step_s']:.3f} s (gen {steps[-1]['gen_s']:.3f})",
                  flush=True)

    trainer = GRPOTrainer(model=model, reward_funcs=[common.trl_reward], args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[StepTimes()])
    generate = trainer._generate

    def timed_generate(*a, **kw):
        with timer.phase("gen"):
            return generate(*a, **kw)

    trainer._generate = profiler.wrap(timed_generate)
    trainer.train()
    if profiler.table is not None:
        steps[-1]["profile_top"] = profiler.table
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    summary = common.summarise("trl", steps, args.warmup, common.param_count(model))
    summary["completion_mean_length"] = lengths
    return summary


def run_one(args: argparse.Namespace, tok_dir: Path, prompts: list[str]) -> dict[str, Any]:
    if args.run == "trl":
        return run_trl(args, tok_dir, prompts)
    return run_cascadec(args, tok_dir, prompts, engine=args.run.split("-", 1)[1])


def main() -> None:
    ap = common.argument_parser(__doc__, RUNS, "bench/results/grpo_vs_trl.json", prompts=16, group=8, micro_batch=128)
    common.main(ap, "bench.grpo_vs_trl", "grpo", run_one)


if __name__ == "__main__":
    main()
