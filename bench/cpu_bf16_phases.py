"""fp32 against bf16 on this CPU, interleaved in one process so that a shared machine's load falls on both
alike: the quickstart model's rollout (``HFRolloutEngine.generate``: fp32 weights, against the engine's bf16
copy) and its update (``token_logprobs`` forward + backward of the GRPO loss's input: fp32, against bf16
autocast with fp32 master weights, as accelerate runs it). ``--rounds`` alternations; medians reported.

Usage (from the repository root; the packaged SmolLM2 must be installed, or pass ``--shape smollm2-135m``)::

    python -m bench.cpu_bf16_phases --rounds 3 --out bench/results/cpu-bf16-phases.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=32, help="rollout rows (prompts x group)")
    ap.add_argument("--new", type=int, default=8, help="new tokens per rollout (forced: no EOS stop)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/results/cpu-bf16-phases.json")
    ap.add_argument("--shape", choices=("smollm2-135m",), default=None,
                    help="a random model of this shape and a 34-token prompt instead of the packaged SmolLM2 "
                         "(the same work: every row decodes --new tokens)")
    args = ap.parse_args()
    import torch

    from runtime.logprobs import token_logprobs
    from runtime.rollout.hf import HFRolloutEngine

    model, tok, prompt = _model_and_prompt(args.shape)
    model.train()
    engines = {"fp32": HFRolloutEngine(model, tok), "bf16": HFRolloutEngine(model, tok, dtype=torch.bfloat16)}
    for e in engines.values():
        e.eos_ids = [-1]  # every row generates --new tokens, so both precisions do the same work
    times: dict[str, dict[str, list[float]]] = {p: {"rollout_s": [], "update_s": []} for p in engines}
    for _ in range(args.rounds):
        for precision, engine in engines.items():
            start = time.perf_counter()
            batch = engine.generate([prompt], n=args.rows, max_new_tokens=args.new, temperature=1.0, top_p=1.0,
                                    top_k=0, seed=0)
            times[precision]["rollout_s"].append(time.perf_counter() - start)
            rows = [p + c for p, c in zip(batch.prompt_ids, batch.completion_ids)]
            ids = torch.tensor(rows)
            comp = torch.zeros_like(ids, dtype=torch.bool)
            comp[:, len(batch.prompt_ids[0]):] = True
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = token_logprobs(model, ids, torch.ones_like(ids), comp,
                                     compute_dtype=torch.bfloat16 if precision == "bf16" else None)
            (-out.logprobs.sum()).backward()
            model.zero_grad(set_to_none=True)
            times[precision]["update_s"].append(time.perf_counter() - start)
            print(precision, {k: round(v[-1], 2) for k, v in times[precision].items()}, flush=True)
    summary = {p: {k: statistics.median(v) for k, v in t.items()} for p, t in times.items()}
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None)
    payload = {"command": f"python -m bench.cpu_bf16_phases {flags}",
               "loadavg_end": os.getloadavg(), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "cpu_capability": torch.backends.cpu.get_cpu_capability(), "times": times, "median": summary,
               "bf16_over_fp32": {k: summary["bf16"][k] / summary["fp32"][k] for k in summary["fp32"]}}
    Path(args.out).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(json.dumps(payload["median"]), json.dumps(payload["bf16_over_fp32"]))


def _model_and_prompt(shape: str | None):
    """The quickstart's model and one of its prompts (34 tokens), or a random model of ``shape`` with a
    34-token prompt."""
    import tempfile

    from bench import gpu_common as common
    from cascadec.contract.plan import ModelRef
    from runtime.models import load_model

    if shape is None:
        model, tok = load_model(ModelRef(kind="packaged", name="smollm2-135m-instruct"), seed=0)
        messages = [{"role": "system", "content": "Reply with the result only, as: Answer: N"},
                    {"role": "user", "content": "What is 37 + 45?"}]
    else:
        config = common.MODEL_SHAPES[shape]["config"]
        tok_dir = common.build_tokenizer(config["vocab_size"], Path(tempfile.mkdtemp(prefix="bf16-phases-")))
        model, tok = load_model(ModelRef(kind="tiny", name=common.MODEL_SHAPES[shape]["family"], config=config,
                                         tokenizer=str(tok_dir)), seed=0)
        messages = [{"role": "user", "content": common.make_prompts(1, 29, config["vocab_size"], seed=0)[0]}]
    return model, tok, tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


if __name__ == "__main__":
    main()
