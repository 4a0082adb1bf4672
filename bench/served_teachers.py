"""MOPD with two teachers served by vLLM servers that ``cascadec run`` starts, against the same teachers loaded
locally, in one run on the same machine (issue 17).

The cascade: the packaged SmolLM2-135M-Instruct as the student, two domains routed to two teachers (the base
model, and a copy with 2% noise on every weight as a named outside checkpoint, so that the loss is not 0), one ``distill`` step of ``--prompts`` prompts x 2
rollouts x ``--new`` tokens in fp32. The rollouts are seeded, so both runs sample the same tokens and their MOPD
losses differ only by the teachers' log-probs. Needs ``$CASCADEC_VLLM_PYTHON`` (docs/serving.md).

Usage (from the repository root)::

    CASCADEC_VLLM_PYTHON=~/.cache/cascadec/vllm-venv/bin/python python -m bench.served_teachers \\
        --out bench/results/served-teachers.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

SPEC = '''cascade "served-{mode}" {{
  seed = 3
  base = model(packaged("smollm2-135m-instruct"))
  checkpoints = {{ copy = model("{copy}") }}
  domain arith {{ train = inline([{{prompt = "What is 2+3?", answer = "5"}}, {{prompt = "What is 7-4?", answer = "3"}}])
                 reward = exact() }}
  domain words {{ train = inline([{{prompt = "Name a colour.", answer = "red"}}, {{prompt = "Name a fruit.", answer = "apple"}}])
                 reward = exact() }}
  stage mopd = distill(base) on [arith, words] {{
    steps = 1  lr = 1e-6  prompts_per_step = {prompts}  rollouts_per_prompt = 2  max_response = {new}  temperature = 1.0
    teachers {{ arith = copy  default = base }}
    resources {{ precision = fp32 {resources} }}
  }}
}}
'''
SERVED = "teacher_servers = { copy = vllm(gpus = 0, memory = 0.5), base = vllm(gpus = 0, memory = 0.5) }"


def perturbed_teacher(work: Path, scale: float = 0.02) -> Path:
    """The packaged model with Gaussian noise (``scale`` x each tensor's std, seed 0) added to every weight, saved
    once under ``work``: a teacher that disagrees with the student, so the MOPD loss is not trivially 0."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runtime.models import packaged_checkpoint

    target = work / "perturbed"
    if (target / "config.json").is_file():
        return target
    source = packaged_checkpoint("smollm2-135m-instruct")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=g) * scale * param.float().std())
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def run_mode(mode: str, work: Path, prompts: int, new: int) -> dict[str, Any]:
    """Run the one-step cascade with local or served teachers; its metrics line, the wall time and the output."""
    spec = work / f"{mode}.cascade"
    spec.write_text(SPEC.format(mode=mode, copy=perturbed_teacher(work), prompts=prompts,
                                new=new, resources=SERVED if mode == "served" else ""))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="2", VLLM_CPU_KVCACHE_SPACE="1")
    env.setdefault("CASCADEC_VLLM_ARGS", "--enforce-eager --max-model-len 1024")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cascadec", "run", str(spec), "--run-dir", str(work / mode),
                           "-o", str(work / "build"), "--tracking", ""],
                          cwd=work, env=env, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - start
    metrics = work / mode / "stages" / "mopd" / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    return {"rc": proc.returncode, "wall_s": wall, "metrics": json.loads(lines[-1]) if lines else None,
            "output": proc.stdout[-3000:] + proc.stderr[-3000:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--new", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cascadec-served-bench"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    runs = {mode: run_mode(mode, args.work, args.prompts, args.new) for mode in ("local", "served")}
    keys = ("loss", "reverse_kl", "teacher_s", "gen_s", "train_s", "step_time_s")
    result = {
        "command": "python -m bench.served_teachers " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "setting": f"SmolLM2-135M student, 2 teachers, {args.prompts} prompts x 2 rollouts x <= {args.new} tokens, fp32",
        **{mode: {"rc": r["rc"], "wall_s": round(r["wall_s"], 1),
                  **{k: r["metrics"].get(k) for k in keys if r["metrics"]}} for mode, r in runs.items()},
    }
    print(json.dumps(result, indent=2))
    for mode, r in runs.items():
        if r["rc"] != 0:
            print(f"--- {mode} failed:\n{r['output']}", file=sys.stderr)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r["rc"] == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
