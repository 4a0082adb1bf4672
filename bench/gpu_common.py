"""Shared pieces of the GPU benchmarks (bench/grpo_vs_trl.py, bench/distill_vs_trl.py).

Both frameworks get the same model (architecture, random weights from one seed, fp32 master weights with
bf16 autocast), the same tokenizer, the same rendered prompts and the same lengths; only the framework
differs. Numbers are measured with CUDA synchronisation around each phase.

MFU of the update phase (Kaplan et al. 2020, Eq. 2.1; PaLM, Chowdhery et al. 2022, App. B): model FLOPs
``6 * N * tokens`` (forward 2N, backward 4N per token, attention FLOPs ignored; N counts tied embeddings
once) divided by the update time and by the dense bf16 peak of one H200 SXM, 989e12 FLOP/s (NVIDIA H200
datasheet; the same chip as the H100 SXM). The update time is the step time minus the rollout time, so it
also holds reward scoring, log-prob passes, teacher scoring, backward and the optimizer step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from cascadec.contract.fsutil import atomic_write_text

H200_BF16_DENSE_PEAK = 989e12

# SmolLM2-135M and Qwen2.5-0.5B shapes (their published config.json files), random weights.
MODEL_SHAPES: dict[str, dict[str, Any]] = {
    "smollm2-135m": {
        "family": "llama",
        "config": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                       "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True,
                       "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 100000.0},
    },
    # For CPU smoke tests of the scripts only.
    "tiny": {
        "family": "llama",
        "config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "vocab_size": 512, "tie_word_embeddings": True, "max_position_embeddings": 512},
    },
    "qwen2.5-0.5b": {
        "family": "qwen2",
        "config": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                       "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
                       "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0},
    },
}

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tokenizer(vocab_size: int, directory: Path) -> Path:
    """Save a word-level tokenizer of exactly ``vocab_size`` tokens (ChatML specials, ``w3``...) to
    ``directory`` and return it: every id the model can sample decodes, and full-vocabulary losses that cut
    logits to ``len(tokenizer)`` see the whole vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from runtime.models import CHATML_TEMPLATE

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for word in ("user", "assistant", "system"):
        vocab[word] = len(vocab)
    vocab.update({f"w{i}": i for i in range(len(vocab), vocab_size)})
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS[0]))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=SPECIALS[1], eos_token=SPECIALS[2],
                                  pad_token=SPECIALS[0], unk_token=SPECIALS[0], additional_special_tokens=SPECIALS[1:])
    tok.chat_template = CHATML_TEMPLATE
    tok.padding_side = "left"
    tok.save_pretrained(directory)
    return directory


def make_prompts(count: int, words: int, vocab_size: int, seed: int) -> list[str]:
    """``count`` user turns of ``words`` random vocabulary words each (one token per word)."""
    rng = random.Random(seed)
    return [" ".join(f"w{rng.randrange(8, vocab_size)}" for _ in range(words)) for _ in range(count)]


def length_reward(samples, completions, **_: Any) -> list[float]:
    """A cheap reward with spread inside each group: the share of completion characters with an even code
    point (any tokenizer's text works)."""
    return [sum(ord(c) % 2 == 0 for c in text) / max(len(text), 1) for text in completions]


def trl_reward(completions, **_: Any) -> list[float]:
    """:func:`length_reward` in TRL's reward-function signature."""
    return length_reward(None, completions)


def param_count(model: torch.nn.Module) -> int:
    """Parameters, tied ones once (``named_parameters`` de-duplicates shared tensors)."""
    return sum(p.numel() for _, p in model.named_parameters())


def mfu(params: int, tokens: float, seconds: float, peak: float = H200_BF16_DENSE_PEAK) -> float:
    """Model FLOPs utilisation ``6 * params * tokens / seconds / peak`` (see the module docstring)."""
    return 6.0 * params * tokens / max(seconds, 1e-9) / peak


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class CudaTimer:
    """Accumulates synchronised wall time of named phases (seconds)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start

    def pop(self) -> dict[str, float]:
        out, self.totals = self.totals, {}
        return out


def environment() -> dict[str, Any]:
    """Versions and the device, for the result files."""
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "accelerate", "trl", "datasets"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    info["loadavg"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    info["cpu_count"] = os.cpu_count()
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        info["device_count"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
    return info


def uses_bf16(args: argparse.Namespace) -> bool:
    """Whether both frameworks run under bf16 autocast (fp32 master weights), as the runtime would pick it."""
    from runtime.precision import mixed_precision

    return mixed_precision(args.precision, cuda=args.device == "cuda") == "bf16"


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TMPDIR")))


def write_json(path: Path, payload: Any) -> None:
    """Atomic JSON write (temp file + rename)."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def summarise(name: str, steps: list[dict[str, float]], warmup: int, params: int) -> dict[str, Any]:
    """Median figures over the steps after ``warmup``: step_s, gen_s, update_s, rollout tokens/s, MFU.

    A profiled step is left out when another step is timed (the profiler's own overhead)."""
    timed = [s for s in steps[warmup:] if "profile_top" not in s] or steps[warmup:] or steps
    step_s = median([s["step_s"] for s in timed])
    gen_s = median([s["gen_s"] for s in timed])
    update_s = median([s["step_s"] - s["gen_s"] for s in timed])
    gen_tokens = median([s["gen_tokens"] for s in timed])
    update_tokens = median([s["update_tokens"] for s in timed])
    return {
        "name": name, "steps_timed": len(timed), "step_s": step_s, "gen_s": gen_s, "update_s": update_s,
        "rollout_tokens_per_s": gen_tokens / max(gen_s, 1e-9), "gen_tokens": gen_tokens,
        "update_tokens": update_tokens, "update_mfu": mfu(params, update_tokens, update_s),
        "peak_mem_gib": max(s.get("peak_mem_gib", 0.0) for s in steps), "params": params,
        "per_step": steps,
    }


def markdown_table(rows: list[dict[str, Any]], baseline: str) -> str:
    """A result table; ``x vs <baseline>`` is the baseline's step time over the row's."""
    base = next((r for r in rows if r["name"] == baseline), None)
    head = ("| run | s/step | rollout s | update s | rollout tok/s | update MFU | peak GiB | x vs "
            f"{baseline} |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        ratio = base["step_s"] / r["step_s"] if base and r.get("step_s") else float("nan")
        lines.append(
            f"| {r['name']} | {r['step_s']:.3f} | {r['gen_s']:.3f} | {r['update_s']:.3f} | "
            f"{r['rollout_tokens_per_s']:,.0f} | {100 * r['update_mfu']:.1f}% | {r['peak_mem_gib']:.1f} | {ratio:.1f}x |"
        )
    return "\n".join(lines)


def _profiler():
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    return profile(activities=activities)


def profile_table(prof) -> str:
    """The 25 operators with the most device time (CPU time without CUDA)."""
    key = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60)


class UpdateProfiler:
    """A ``torch.profiler`` table of one step's update phase: collection pauses while the rollout runs
    (``toggle_collection_dynamic``), so the table shows what the update's time goes to (log-prob and
    teacher passes, backward, optimizer), the phase the MFU figure measures.

    Wrap the framework's generate function with :meth:`wrap`; :meth:`start` / :meth:`stop` around a step
    (or :meth:`step` as a context) fill :attr:`table`.
    """

    def __init__(self) -> None:
        self.prof = None
        self.table: str | None = None

    def wrap(self, generate: Callable[..., Any]) -> Callable[..., Any]:
        def unprofiled(*args: Any, **kwargs: Any) -> Any:
            prof = self.prof
            if prof is None:
                return generate(*args, **kwargs)
            prof.toggle_collection_dynamic(False, prof.activities)
            try:
                return generate(*args, **kwargs)
            finally:
                prof.toggle_collection_dynamic(True, prof.activities)
        return unprofiled

    def start(self) -> None:
        self.prof = _profiler()
        self.prof.__enter__()

    def stop(self) -> None:
        if self.prof is None:
            return
        prof, self.prof = self.prof, None
        prof.__exit__(None, None, None)
        self.table = profile_table(prof)

    @contextmanager
    def step(self, enabled: bool):
        if not enabled:
            yield
            return
        self.start()
        try:
            yield
        finally:
            self.stop()


def run_parent(module: str, benchmark: str, runs: list[str], out: Path) -> None:
    """Run each of ``runs`` as ``python -m module <this command's args> --run R --child part.json`` in
    turn (fresh CUDA memory and accelerate state each); after each, rewrite ``out`` with every run so far
    and a table, so a later run that is cut short loses nothing before it."""
    results = []
    parts = scratch_dir(f"{benchmark}-parts-")
    command = " ".join(["python", "-m", module, *sys.argv[1:]])
    for run in runs:
        part = parts / f"{run}.json"
        cmd = [sys.executable, "-m", module, *sys.argv[1:], "--run", run, "--child", str(part)]
        print("+", " ".join(cmd), flush=True)
        proc = subprocess.run(cmd, check=False)
        if proc.returncode != 0 or not part.exists():
            results.append({"name": run, "error": f"exit status {proc.returncode}"})
        else:
            results.append(json.loads(part.read_text()))
            for step in results[-1].get("per_step", []):
                if "profile_top" in step:
                    text = f"update phase of the last {run} step (rollout not collected), {command}\n\n"
                    atomic_write_text(out.with_name(f"{out.stem}.{run}.profile.txt"), text + step["profile_top"])
                    print(f"profile of the {text}{step['profile_top']}", flush=True)
        ok = [r for r in results if "error" not in r]
        baseline = "trl" if any(r["name"] == "trl" for r in ok) else (ok[0]["name"] if ok else "")
        table = markdown_table(ok, baseline=baseline) if ok else "(no run finished)"
        write_json(out, {"benchmark": benchmark, "command": command, "runs": results, "table": table})
    print(table)
    for r in results:
        if "error" in r:
            print(f"{r['name']}: FAILED ({r['error']})")


def argument_parser(doc: str, runs: tuple[str, ...], out: str, *, prompts: int, micro_batch: int,
                    group: int | None = None) -> argparse.ArgumentParser:
    """The command line both benchmarks share; ``group`` (rollouts per prompt) only where it is given."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--shape", default="smollm2-135m", choices=sorted(MODEL_SHAPES))
    ap.add_argument("--prompts", type=int, default=prompts)
    if group is not None:
        ap.add_argument("--group", type=int, default=group)
    ap.add_argument("--new", type=int, default=256, help="completion tokens (forced)")
    ap.add_argument("--prompt-words", type=int, default=64, help="words (= tokens) per user turn")
    ap.add_argument("--micro-batch", type=int, default=micro_batch, help="cascadec rows per forward/backward")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2, help="steps left out of the medians")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a smoke test of the script")
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                    help="both frameworks: auto = bf16 autocast on CUDA and on a CPU with bf16 units, else fp32")
    ap.add_argument("--profile", action="store_true",
                    help="torch.profiler table of the last step's update phase, each run, written beside --out")
    ap.add_argument("--runs", default=",".join(runs))
    ap.add_argument("--out", default=out)
    ap.add_argument("--run", choices=runs, help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap


def run_child(args: argparse.Namespace, run: Callable[[Path, list[str]], dict[str, Any]]) -> None:
    """One run in this process: seed, build the tokenizer and prompts, call ``run(tok_dir, prompts)`` and
    write its summary (with the environment and arguments) to ``--child``."""
    torch.manual_seed(0)
    shape = MODEL_SHAPES[args.shape]
    tok_dir = build_tokenizer(shape["config"]["vocab_size"], scratch_dir("bench-tok-"))
    prompts = make_prompts(args.prompts, args.prompt_words, shape["config"]["vocab_size"], seed=1)
    result = run(tok_dir, prompts)
    result["environment"] = environment()
    result["args"] = {k: v for k, v in vars(args).items() if k != "child"}
    write_json(Path(args.child), result)


def main(ap: argparse.ArgumentParser, module: str, benchmark: str,
         run: Callable[[argparse.Namespace, Path, list[str]], dict[str, Any]]) -> None:
    """Parse the command line; as a child (``--child``) do one run, else drive every run (:func:`run_parent`)."""
    args = ap.parse_args()
    if args.child:
        run_child(args, lambda tok_dir, prompts: run(args, tok_dir, prompts))
    else:
        run_parent(module, benchmark, args.runs.split(","), Path(args.out))
