"""Scaling of a GRPO stage and an MOPD distill stage under FSDP2 over N data-parallel processes (issue 8).

For each N of ``--gpus``, a two-stage cascade is written from ``bench/scale/scale.cascade.j2`` (a
random-weight model of ``--shape``; ``grpo = grpo(base)``, then ``mopd = distill(grpo)`` with the base model
as every domain's teacher; ``strategy = fsdp2``, ``gpus = N``), compiled with ``cascadec compile``, and each
stage is run through its rendered ``build/<name>/stages/<stage>/launch.sh`` (torchrun, N processes). The
figures come from the runtime's own ``stages/<stage>/metrics.jsonl``, not from a second timer:

* ``step_s``: median ``step_time_s`` (wall seconds of one optimizer step, rollouts included, averaged over
  ranks) of the steps after ``--warmup``;
* ``rollout_tok_s``: global completion tokens of a step (``prompts x group x response_len``) over the median
  rollout time ``gen_s``; ``total_tok_s``: the same tokens over ``step_s`` (end to end);
* ``peak_gib``: the largest ``peak_mem_gib`` of the timed steps, ``torch.cuda.max_memory_allocated`` of the
  rank with the most (CUDA only; 0 on CPU);
* ``efficiency``: ``total_tok_s(N) / (N * total_tok_s(1))``, strong scaling at a fixed global batch (each
  rank gets ``1/N`` of the prompts), so 1.0 is perfect and communication or fixed costs lower it.

On CPU (``--device cpu``: gloo, FSDP2 over CPU processes) the figures only show that the path works: on a
few shared cores thread contention, not the work, sets them.

The global batch (``--prompts`` x ``--group`` rollouts of ``--new`` tokens) is the same for every N.
``--out`` is a JSON file that each invocation updates (runs of other N are kept), and a Markdown table is
written next to it (``.md``): the 1- and 2-GPU runs can come from two invocations
(``CUDA_VISIBLE_DEVICES=0`` for N = 1). ``--budget`` bounds a whole invocation: the stage still running
then is stopped (its process group killed), and a stage whose steps all finished before it was stopped (while
writing its checkpoint) keeps its figures.

Usage (from the repository root)::

    python -m bench.scale --shape qwen2.5-1.5b --gpus 1,2 --out bench/results/scale-gpu.json
    CUDA_VISIBLE_DEVICES=0 python -m bench.scale --gpus 1 --budget 120   # as scripts/device/call_scale.sh
    python -m bench.scale --shape tiny --device cpu --gpus 1,2 --out /tmp/scale-cpu.json   # smoke test

Exit status: 0 when every run finished, 1 otherwise (the failing stage's log tail is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import gpu_common as common
from cascadec.contract.fsutil import atomic_write_text
from runtime.state import read_jsonl

TEMPLATE = Path(__file__).with_name("scale") / "scale.cascade.j2"
STAGES = ("grpo", "mopd")
CPU_NOTE = ("A CPU smoke run (gloo, FSDP2 over CPU processes): it shows that the path works; on shared cores "
            "thread contention, not the work, sets these figures.")

# Qwen2.5-1.5B's published config.json (hidden 1536, 28 layers, 12 query / 2 KV heads, tied embeddings);
# the other shapes are bench/gpu_common.py's.
SHAPES: dict[str, dict[str, Any]] = {
    **common.MODEL_SHAPES,
    "qwen2.5-1.5b": {
        "family": "qwen2",
        "config": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                   "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                   "tie_word_embeddings": True, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
                   "rope_theta": 1000000.0},
    },
}


def render_spec(args: argparse.Namespace, n: int, tok_dir: Path, prompts: list[str]) -> str:
    """The cascade source for ``n`` processes (jinja2 template ``bench/scale/scale.cascade.j2``)."""
    import jinja2

    shape = SHAPES[args.shape]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(TEMPLATE.read_text()).render(
        name=f"scale-{args.shape.replace('.', '_')}-n{n}", family=shape["family"],
        config=[(k, _literal(v)) for k, v in shape["config"].items()], tokenizer=json.dumps(str(tok_dir)),
        gpus=n, device=args.device, precision="bf16" if args.device == "cuda" else "fp32",
        micro_batch=args.micro_batch, prompts=[json.dumps(p) for p in prompts], steps=args.steps,
        prompts_per_step=args.prompts, group=args.group, new=args.new,
        max_prompt=args.prompt_words + 16,
    )


def _literal(value: Any) -> str:
    """A config value in the cascade language (``true``/``false``, numbers as Python prints them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def run_logged(cmd: list[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` in its own process group with stdout and stderr appended to ``log``; returns its exit
    status, or 124 after ``timeout`` seconds. However this returns (a timeout, or SIGTERM to this process,
    which :func:`main` turns into SystemExit), a group still running is terminated: torchrun's workers
    would otherwise keep their GPUs."""
    with open(log, "a") as f:
        f.write("+ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            f.write(f"timed out after {timeout:.0f} s\n")
            return 124
        finally:
            if proc.poll() is None:
                _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def stage_figures(metrics: list[dict[str, Any]], warmup: int, prompts: int, group: int) -> dict[str, Any]:
    """Per-stage figures from the runtime's metrics lines (see the module docstring for definitions).

    Raises ValueError when there are no metrics lines.
    """
    if not metrics:
        raise ValueError("the stage wrote no metrics")
    timed = metrics[warmup:] or metrics
    step_s = common.median([m["step_time_s"] for m in timed])
    gen_s = common.median([m["gen_s"] for m in timed])
    tokens = prompts * group * common.median([m["response_len"] for m in timed])
    return {
        "steps": len(metrics), "steps_timed": len(timed), "step_s": step_s, "gen_s": gen_s,
        "completion_tokens": tokens, "rollout_tok_s": tokens / max(gen_s, 1e-9),
        "total_tok_s": tokens / max(step_s, 1e-9),
        "peak_gib": max((m.get("peak_mem_gib", 0.0) for m in timed), default=0.0),
        "loss": [m.get("loss") for m in metrics], "per_step_s": [m["step_time_s"] for m in metrics],
    }


def run_one(args: argparse.Namespace, n: int, work: Path, tok_dir: Path, prompts: list[str],
            result: dict[str, Any], save: Callable[[], None], deadline: float) -> None:
    """Compile and run the cascade for ``n`` processes, filling ``result`` (``gpus``, ``commands``,
    ``stages``, ``wall_s``, and ``error`` on failure) and calling ``save`` after each stage, so a run cut
    short keeps the stages that finished. Each command may run ``args.timeout`` seconds, and none past
    ``deadline`` (``time.monotonic()``). Stage checkpoints are deleted afterwards (several GB each at
    the 1.5B shape); logs and metrics stay in ``work``."""
    spec_dir = work / f"n{n}"
    shutil.rmtree(spec_dir, ignore_errors=True)
    spec_dir.mkdir(parents=True)
    spec = spec_dir / "scale.cascade"
    spec.write_text(render_spec(args, n, tok_dir, prompts))
    name = f"scale-{args.shape.replace('.', '_')}-n{n}"
    build, run_dir, log = spec_dir / "build", spec_dir / "runs", spec_dir / "run.log"
    commands = [[sys.executable, "-m", "cascadec.cli", "compile", str(spec), "-o", str(build)]]
    commands += [["bash", str(build / name / "stages" / s / "launch.sh"), f"--run-dir={run_dir}"] for s in STAGES]
    result.update(gpus=n, commands=[" ".join(c) for c in commands], stages={}, wall_s={}, log=str(log))
    # The benchmark's reward (bench.gpu_common:length_reward) is imported by every rank.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    try:
        for cmd, stage in zip(commands, (None, *STAGES)):
            start = time.perf_counter()
            rc = run_logged(cmd, log, max(1.0, min(args.timeout, deadline - time.monotonic())), env)
            if stage is not None:
                result["wall_s"][stage] = time.perf_counter() - start
                metrics = read_jsonl(run_dir / "stages" / stage / "metrics.jsonl")
                # Every step's metrics are on disk before the final checkpoint is written, so a launch cut
                # short while saving still measured all of its steps.
                if len(metrics) >= args.steps:
                    result["stages"][stage] = stage_figures(metrics, args.warmup, args.prompts, args.group)
                    save()
            if rc != 0:
                result["error"] = f"`{' '.join(cmd)}` exited with status {rc}; log: {log}"
                print("\n".join(log.read_text().splitlines()[-30:]), file=sys.stderr, flush=True)
                return
    finally:
        for stage in STAGES:
            shutil.rmtree(run_dir / "stages" / stage / "final", ignore_errors=True)
            shutil.rmtree(run_dir / "stages" / stage / "ckpt", ignore_errors=True)


def efficiencies(runs: dict[str, dict[str, Any]]) -> None:
    """Add ``efficiency`` (see the module docstring) to every stage of every run that has an N = 1 run."""
    base = runs.get("1", {}).get("stages", {})
    for run in runs.values():
        for stage, figures in run.get("stages", {}).items():
            if stage in base:
                figures["efficiency"] = figures["total_tok_s"] / (run["gpus"] * base[stage]["total_tok_s"])


def markdown(payload: dict[str, Any]) -> str:
    """The result table: one row per (stage, N)."""
    lines = [f"# Scaling: GRPO and MOPD under FSDP2, `{payload['shape']}` shape ({payload['params']:,} parameters)",
             "", f"Setting: {payload['setting']}", "",
             *([CPU_NOTE, ""] if payload["setting"].endswith("device cpu") else []),
             "| stage | N | s/step | rollout s | rollout tok/s | total tok/s | peak GiB/GPU | efficiency vs N=1 |",
             "|---|---|---|---|---|---|---|---|"]
    for stage in STAGES:
        for key in sorted(payload["runs"], key=int):
            run = payload["runs"][key]
            f = run.get("stages", {}).get(stage)
            if f is None:
                lines.append(f"| {stage} | {key} | {'failed (below)' if 'error' in run else 'not run'} | | | | | |")
                continue
            eff = f"{f['efficiency']:.2f}" if "efficiency" in f else "-"
            lines.append(f"| {stage} | {key} | {f['step_s']:.2f} | {f['gen_s']:.2f} | {f['rollout_tok_s']:,.0f} | "
                         f"{f['total_tok_s']:,.0f} | {f['peak_gib']:.1f} | {eff} |")
    errors = [f"- N={key}: {run['error']}" for key, run in sorted(payload["runs"].items()) if "error" in run]
    if errors:
        lines += ["", "Errors (a stage with figures above finished all its steps before it failed):", "", *errors]
    lines += ["", "Commands (per N):", ""]
    for key in sorted(payload["runs"], key=int):
        lines += [f"- N={key}, invoked as `{payload['runs'][key]['invocation']}`:"]
        lines += [f"  - `{c}`" for c in payload["runs"][key].get("commands", [])]
    env = payload["runs"][max(payload["runs"], key=int)]["environment"]
    lines += ["", "Environment: " + ", ".join(f"{k} {v}" for k, v in sorted(env.items())), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="qwen2.5-1.5b", choices=sorted(SHAPES))
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a smoke test (gloo)")
    ap.add_argument("--gpus", default="1,2", help="comma-separated process counts N")
    ap.add_argument("--prompts", type=int, default=16, help="prompts per step (global)")
    ap.add_argument("--group", type=int, default=8, help="rollouts per prompt")
    ap.add_argument("--new", type=int, default=128, help="max completion tokens")
    ap.add_argument("--prompt-words", type=int, default=64, help="words (= tokens) per user turn")
    ap.add_argument("--micro-batch", type=int, default=16, help="rows per forward/backward per rank")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="steps left out of the medians")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per compile or stage launch")
    ap.add_argument("--budget", type=float, default=float("inf"),
                    help="seconds for the whole invocation; a stage launch still running then is stopped")
    ap.add_argument("--work", type=Path, help="scratch directory (default: a new temporary one)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/scale-gpu.json"))
    args = ap.parse_args(argv)
    # `timeout` and the device tool stop a run with SIGTERM: unwind, so the running stage's group is killed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    counts = [int(x) for x in args.gpus.split(",") if x.strip()]
    if args.steps <= args.warmup:
        ap.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup}) to leave a timed step")
    for n in counts:
        if (args.prompts * args.group) % (n * args.micro_batch):
            ap.error(f"prompts x group = {args.prompts * args.group} is not divisible by N x micro-batch = "
                     f"{n} x {args.micro_batch}; pick another --micro-batch")

    deadline = time.monotonic() + args.budget
    work = args.work or common.scratch_dir("cascadec-scale-")
    work.mkdir(parents=True, exist_ok=True)
    shape = SHAPES[args.shape]
    tok_dir = common.build_tokenizer(shape["config"]["vocab_size"], work / "tokenizer")
    prompts = common.make_prompts(max(args.prompts * 4, 16), args.prompt_words, shape["config"]["vocab_size"], seed=0)
    payload = json.loads(args.out.read_text()) if args.out.is_file() else {}
    setting = (f"{args.prompts} prompts x {args.group} rollouts x up to {args.new} new tokens per step "
               f"(global), {args.prompt_words}-token prompts, micro-batch {args.micro_batch}, "
               f"{args.steps} steps ({args.warmup} warm-up), device {args.device}")
    if payload.get("shape") != args.shape or payload.get("setting") != setting:
        payload = {"runs": {}}  # figures of another setting are not comparable
    payload.update(shape=args.shape, setting=setting, params=_param_count(shape))
    invocation = " ".join(["python", "-m", "bench.scale", *(argv if argv is not None else sys.argv[1:])])
    ok = True

    def save() -> None:
        efficiencies(payload["runs"])
        common.write_json(args.out, payload)
        atomic_write_text(args.out.with_suffix(".md"), markdown(payload))

    for n in counts:
        print(f"[scale] N={n}: {work / f'n{n}'}", flush=True)
        run = payload["runs"][str(n)] = {"invocation": invocation, "environment": _environment(n)}
        save()
        run_one(args, n, work, tok_dir, prompts, run, save, deadline)
        ok &= "error" not in run
        save()
    print(args.out.with_suffix(".md").read_text())
    return 0 if ok else 1


def _param_count(shape: dict[str, Any]) -> int:
    """Parameters of ``shape`` (tied embeddings once), from a meta-device instance: nothing is allocated."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(shape["family"], **shape["config"])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return common.param_count(model)


def _environment(n: int) -> dict[str, Any]:
    info = common.environment()
    info["processes"] = n
    info["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return info


if __name__ == "__main__":
    sys.exit(main())
