"""The update phase of a GRPO or distillation step with this checkout's code against a base revision's, in
one process: the benchmarks' shape (``bench.grpo_vs_trl`` / ``bench.distill_vs_trl --device cpu``), one rollout
batch, then the update alternately with each revision's versions of the changed functions, so that a
machine whose speed drifts slows both alike (issue 16).

The base revision's modules are read with ``git show`` and swapped in where the trainers call them:
``runtime.ops.token_logprobs.linear_token_logprobs`` (GRPO's log-probs), ``runtime.ops.token_divergence.
linear_token_divergence`` (the logit-distillation losses) and ``runtime.stages.optimizer_step`` (clipping).
Before timing, both revisions take one update from the same model and optimizer state: the loss, gradient
norm and every updated parameter must be bitwise equal, or the script stops.

Usage (from the repository root)::

    python -m bench.cpu_step_ab --step grpo --rounds 5 --base main --out bench/results/cpu-step-ab-grpo.json
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

from bench import gpu_common as common

PATCHES = {  # change -> [(module the trainer calls it through, attribute, file at the base revision)]
    "logprobs": [("runtime.logprobs", "linear_token_logprobs", "runtime/ops/token_logprobs.py")],
    "divergence": [("runtime.stages.distill", "linear_token_divergence", "runtime/ops/token_divergence.py")],
    "clip": [("runtime.stages.policy_update", "optimizer_step", "runtime/stages/__init__.py"),
             ("runtime.stages.distill", "optimizer_step", "runtime/stages/__init__.py")],
}


def base_module(revision: str, path: str) -> types.ModuleType:
    """``path`` as it is at ``revision``, loaded as a fresh module (its imports resolve to this checkout)."""
    if Path(revision).is_dir():  # a copy of the base revision's files (where the checkout has no git history)
        source = (Path(revision) / path).read_text()
    else:
        source = subprocess.run(["git", "show", f"{revision}:{path}"], check=True, capture_output=True,
                                text=True).stdout
    name = "_base_" + path.replace("/", "_").removesuffix(".py")
    module = types.ModuleType(name)
    module.__file__ = f"{revision}:{path}"
    sys.modules[name] = module  # dataclasses look their module up there
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def versions(revision: str, changes: list[str]) -> dict[str, dict[tuple[str, str], object]]:
    """The functions to swap in for each side, ``{"base": ..., "new": ...}``: the new side has this checkout's
    versions of ``changes`` only."""
    loaded: dict[str, types.ModuleType] = {}
    out: dict[str, dict[tuple[str, str], object]] = {"base": {}, "new": {}}
    for change, patches in PATCHES.items():
        for target, attr, path in patches:
            if path not in loaded:
                loaded[path] = base_module(revision, path)
            out["base"][(target, attr)] = getattr(loaded[path], attr)
            chosen = importlib.import_module(target) if change in changes else loaded[path]
            out["new"][(target, attr)] = getattr(chosen, attr)
    return out


def use(functions: dict[tuple[str, str], object]) -> None:
    """Swap ``functions`` in where the trainers call them."""
    for (target, attr), fn in functions.items():
        setattr(importlib.import_module(target), attr, fn)


def grpo_update(args: argparse.Namespace, tok_dir: Path, prompts: list[str]):
    """The GRPO trainer on one rollout batch; returns ``(ctx, update)``, ``update()`` one policy update."""
    from bench.grpo_vs_trl import make_plan
    from runtime.data import load_domains
    from runtime.entry import build_context
    from runtime.stages.grpo import GRPOTrainer
    from runtime.state import RunDir

    plan = make_plan(args, tok_dir, prompts)
    ctx = build_context(plan, plan.stages[0], RunDir(common.scratch_dir("ab-grpo-")))
    trainer = GRPOTrainer(ctx)
    got, _ = trainer._gather(0, load_domains([("bench", plan.domains["bench"].train)])["bench"][: args.prompts])
    adv = trainer._advantages(got, {})
    return ctx, lambda: trainer.update.run(got.rollouts, adv, got.keep, {})


def distill_update(args: argparse.Namespace, tok_dir: Path, prompts: list[str]):
    """The distillation trainer (reverse KL, the base model as teacher) on one rollout batch."""
    from bench.distill_vs_trl import make_plan
    from runtime.data import load_domains
    from runtime.entry import build_context
    from runtime.stages.distill import DistillTrainer
    from runtime.state import RunDir

    plan = make_plan(args, tok_dir, prompts, "reverse_kl")
    ctx = build_context(plan, plan.stages[0], RunDir(common.scratch_dir("ab-distill-")))
    trainer = DistillTrainer(ctx)
    batch = load_domains([("bench", plan.domains["bench"].train)])["bench"][: args.prompts]
    p = trainer.params
    rollouts = ctx.engine.generate([ctx.render_prompt(s) for s in batch], n=1, max_new_tokens=p.max_response,
                                   temperature=p.temperature, top_p=p.top_p, top_k=p.top_k, seed=0)
    names = [trainer.teachers[trainer._route_of(s)] for s in batch]
    rows = list(range(len(batch)))
    return ctx, lambda: trainer._update(rollouts, batch, names, [1.0] * len(batch), rows, {})


def check_equal(ctx, update, sides: dict[str, dict]) -> dict[str, float]:
    """One update per side from the same model and optimizer state; raise unless bitwise equal."""
    policy, optimizer = ctx.unwrapped_policy(), ctx.optimizer
    start_model, start_opt = copy.deepcopy(policy.state_dict()), copy.deepcopy(optimizer.state_dict())
    results = {}
    for side, functions in sides.items():
        policy.load_state_dict(start_model)
        optimizer.load_state_dict(start_opt)
        use(functions)
        metrics = update()
        results[side] = (metrics, {k: v.clone() for k, v in policy.state_dict().items()})
    (m_base, p_base), (m_new, p_new) = results["base"], results["new"]
    differ = [k for k in m_base if m_base[k] != m_new[k]] + [k for k in p_base if not torch.equal(p_base[k], p_new[k])]
    if differ:
        raise SystemExit(f"base and new revisions differ in {differ[:8]}")
    return {k: float(v) for k, v in m_new.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--step", choices=("grpo", "distill"), default="grpo")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--base", default="main", help="git revision of the base side, or a folder of its files")
    ap.add_argument("--shape", default="smollm2-135m", choices=sorted(common.MODEL_SHAPES))
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=4, help="GRPO rollouts per prompt (distillation: 1)")
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--changes", default=",".join(PATCHES), help=f"of {','.join(PATCHES)}: the new side's changes")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    bench_args = argparse.Namespace(**vars(args), steps=1, device="cpu", precision="auto",
                                    gradient_checkpointing=False, prompt_words=64)
    torch.manual_seed(0)
    vocab = common.MODEL_SHAPES[args.shape]["config"]["vocab_size"]
    tok_dir = common.build_tokenizer(vocab, common.scratch_dir("ab-tok-"))
    prompts = common.make_prompts(args.prompts, 64, vocab, seed=1)
    sides = versions(args.base, args.changes.split(","))
    build = grpo_update if args.step == "grpo" else distill_update
    ctx, update = build(bench_args, tok_dir, prompts)
    metrics = check_equal(ctx, update, sides)
    times: dict[str, list[float]] = {"base": [], "new": []}
    for r in range(args.rounds):
        for side in ("base", "new") if r % 2 == 0 else ("new", "base"):  # neither side always goes first
            use(sides[side])
            start = time.perf_counter()
            update()
            times[side].append(round(time.perf_counter() - start, 3))
        print(f"base {times['base'][-1]:.3f} s  new {times['new'][-1]:.3f} s", flush=True)
    ratios = [b / n for b, n in zip(times["base"], times["new"])]
    result = {
        "command": "python -m bench.cpu_step_ab " + " ".join(f"--{k.replace('_', '-')} {v}"
                                                             for k, v in vars(args).items() if v is not None),
        "base": args.base if Path(args.base).is_dir() else subprocess.run(
            ["git", "rev-parse", args.base], capture_output=True, text=True).stdout.strip(),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "loadavg": os.getloadavg()},
        "update_seconds": times,
        "median_base_s": statistics.median(times["base"]), "median_new_s": statistics.median(times["new"]),
        "median_round_ratio": statistics.median(ratios),
        "bitwise_equal_metrics": metrics,
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
