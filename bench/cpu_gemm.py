"""fp32 against bf16 matrix products on this CPU: the SmolLM2-135M shapes of a CPU training step (an MLP
projection and the LM head over 1,616 tokens, the GRPO benchmark's update), alternating the two dtypes in one
process so that load falls on both alike. Whether bf16 pays on a CPU depends on its matrix units: with Intel
AMX (``amx_bf16``) oneDNN runs bf16 products on them; with AVX-512 bf16 alone (``avx512_bf16``) they run on
the vector units, where this measures whether they beat fp32 (issue 16).

Usage (from the repository root)::

    python -m bench.cpu_gemm --rounds 5 --out bench/results/cpu-gemm.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

SHAPES = {"mlp": (1616, 576, 1536), "head": (1616, 576, 49152)}  # (tokens, hidden, outputs)


def gflops(m: int, k: int, n: int, dtype: torch.dtype, repeats: int) -> float:
    """GFLOP/s of ``[m, k] @ [k, n]`` in ``dtype`` (2mkn floating-point operations a product)."""
    gen = torch.Generator().manual_seed(0)
    a, w = torch.randn(m, k, generator=gen).to(dtype), torch.randn(n, k, generator=gen).to(dtype)
    a @ w.T
    start = time.perf_counter()
    for _ in range(repeats):
        a @ w.T
    return 2 * m * k * n * repeats / (time.perf_counter() - start) / 1e9


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.partition(":")[2].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results: dict[str, dict[str, list[float]]] = {s: {"fp32": [], "bf16": []} for s in SHAPES}
    for _ in range(args.rounds):
        for shape, (m, k, n) in SHAPES.items():
            repeats = 20 if shape == "mlp" else 2
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                results[shape][name].append(gflops(m, k, n, dtype, repeats))
    medians = {s: {d: round(statistics.median(v), 1) for d, v in r.items()} for s, r in results.items()}
    payload = {"command": "python -m bench.cpu_gemm " + f"--rounds {args.rounds}", "flags": cpu_flags(),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
               "median_gflops": medians, "gflops": results}
    print(json.dumps({k: payload[k] for k in ("flags", "threads", "median_gflops")}))
    if args.out:
        Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
