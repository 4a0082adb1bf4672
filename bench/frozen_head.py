"""A frozen model's scoring forward with ``logits_to_keep=1`` (the int) against :func:`runtime.logprobs.last_position`
(a 1-D index), alternating in one process: SmolLM2-135M-Instruct (packaged) in bf16, frozen, under
``inference_mode``, as a MOPD teacher scores a batch. The int gives the head the strided ``hidden[:, -1:]``,
and ``torch.matmul`` expands the ``[V, H]`` head to ``[rows, H, V]``; the index gathers a contiguous input.

Usage (from the repository root)::

    python -m bench.frozen_head --rows 32 --tokens 45 --rounds 4 --out bench/results/frozen-head-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from runtime.logprobs import last_position
from runtime.models import packaged_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=45)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", default="bench/results/frozen-head-cpu.json")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(packaged_checkpoint("smollm2-135m-instruct"), dtype=torch.bfloat16)
    model.eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (args.rows, args.tokens), generator=gen)
    times: dict[str, list[float]] = {"int logits_to_keep=1": [], "last_position index": []}
    for _ in range(args.rounds):
        for name, keep in (("int logits_to_keep=1", 1), ("last_position index", last_position(ids))):
            start = time.perf_counter()
            with torch.inference_mode():
                model(input_ids=ids, output_hidden_states=True, logits_to_keep=keep, use_cache=False)
            times[name].append(round(time.perf_counter() - start, 3))
    result = {
        "command": "python -m bench.frozen_head " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "loadavg": os.getloadavg()},
        "seconds_per_forward": times,
        "median_ratio": statistics.median(times["int logits_to_keep=1"])
        / statistics.median(times["last_position index"]),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
