"""Fast rollouts for Llama-family policies: a static KV cache and a CUDA-graph-captured decode step.

``transformers.generate`` spends most of a small model's rollout time launching kernels from Python: at
batch 128 x 256 new tokens on one H200 the SmolLM2-135M architecture took 6.4 s with the dynamic cache and
1.34 s with ``cache_implementation="static"`` (issue 6), and ``torch.compile(mode="reduce-overhead")``
around ``forward`` fails with "CUDA-graph output overwritten". This engine owns the decode loop instead:

* one static KV cache per batch shape, ``[B, kv_heads, T_max, head_dim]`` per layer, written in place with
  ``index_copy_`` at a slot index held in a tensor, so the step has no Python-side shape or position;
* the decode step (embedding, every layer, final norm and head for one new token) and the sampling of the
  next token (temperature, top-k, top-p, with the exponential race ``argmax(p / E)``, ``E ~ Exp(1)``, the
  Gumbel-max trick) are captured together once per ``(B, T_max)`` and sampling setting into a
  ``torch.cuda.CUDAGraph`` (``runtime.rollout.graph_step``): one replay per token, no host work in between,
  finished rows checked every ``SYNC_EVERY`` steps only. A graph still runs every kernel, so fusing them
  matters too: the engine also captures a ``torch.compile``d decode step and keeps the faster (H200,
  SmolLM2-135M shape, batch 128, decode only: 4.35 ms eager, 2.01 ms compiled per token);
* each prompt is pre-filled once and its cache rows are repeated ``n`` times for the group;
* when the live rows fit half the batch (checked every ``SYNC_EVERY`` steps, with at least
  ``COMPACT_MIN_STEPS`` left), they move to a decoder of half the size or less
  (``runtime.rollout.compaction``), so finished rows stop costing decode work.

When the policy's parameters are whole on this rank and already have the engine's dtype, the layer modules
and weights are the policy's own (no copy), and an optimizer step that updates them in place is seen by the
next rollout. Otherwise the engine decodes from its own whole copy of the policy in the engine's dtype, which
:meth:`FastRolloutEngine.sync_weights` refreshes in place after every optimizer step:

* fp32 master weights under bf16 autocast (accelerate's mixed precision): one fused ``_foreach_copy_``;
  re-casting every weight inside every decode step instead would move 6 bytes per parameter per token;
* FSDP2 (``DTensor`` shards): every rank keeps a whole copy (1.5B parameters -> 3 GB in bf16), filled by
  gathering one parameter at a time with ``DTensor.full_tensor()``, so no rank ever holds a second full
  fp32 model; decoding then runs without collectives, so ranks that stop after different numbers of tokens
  need no ``synced_gpus``. This is the hybrid-engine layout of veRL (Sheng et al. 2024, HybridFlow).

Either way the captured graphs stay valid, since no tensor moves; a different model object drops them.
DeepSpeed ZeRO-3 shards are not gathered here (see ``runtime.rollout.select_engine``).

On a CPU the same code runs eagerly (no graphs); tests compare it with ``transformers`` greedy decoding.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from runtime.logprobs import pad_token_id, unwrap_model
from runtime.replica import is_dtensor, paired_parameters, replica, whole
from runtime.rollout.base import RolloutBatch
from runtime.rollout.compaction import COMPACT_MIN_STEPS, LiveRows, compact_size
from runtime.rollout.decoder import StaticDecoder, UnsupportedModelError, check_supported
from runtime.rollout.graph_step import DecodeState, Sampling, StepRunner

__all__ = ["FastRolloutEngine", "UnsupportedModelError", "check_supported"]

SYNC_EVERY = 32
MAX_CACHED_SHAPES = 8
_SLOT_ROUND = 64
# Shortest rollout (new tokens) for which the compiled decode step is tried (see ``FastRolloutEngine``):
# at 16 tokens a compile of ~30 s would save ~3 s over a 100-step stage.
COMPILE_MIN_NEW_TOKENS = 128


@dataclass
class _Shape:
    """One cached batch shape: its decoder, the step its graphs capture (eager or compiled, chosen by the
    first capture), and a captured runner per sampling setting."""

    decoder: StaticDecoder
    step_fn: object = None
    compiled: bool = False
    runners: dict = field(default_factory=dict)


def _generator_index(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def _rng_kept(device: torch.device) -> contextlib.AbstractContextManager:
    """Restore ``device``'s default generator (and the CPU's) after the block."""
    index = _generator_index(device)
    return torch.random.fork_rng(devices=[] if index is None else [index], device_type="cuda")


@contextlib.contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Seed ``device``'s default generator (the one CUDA graphs capture) for the block, then restore it."""
    index = _generator_index(device)
    with _rng_kept(device):
        (torch.random.default_generator if index is None else torch.cuda.default_generators[index]).manual_seed(seed)
        yield


class FastRolloutEngine:
    """:class:`runtime.rollout.base.RolloutEngine` with a static KV cache and CUDA-graph decode.

    Args:
        model: the policy (a transformers Llama-family causal LM, possibly DDP/accelerate-wrapped or sharded
            by FSDP2). Whole parameters in ``dtype`` are used directly, so in-place optimizer updates need no
            weight sync; otherwise the engine decodes from its own whole copy (see the module docstring),
            built here: under FSDP2 a collective, so construct the engine on every rank.
        tokenizer: the policy's tokenizer (its pad and EOS ids are used).
        device: where the cache lives; CUDA graphs are used on CUDA only.
        dtype: compute and KV-cache dtype (bf16 on GPU); a policy in another dtype is decoded from a copy
            in this dtype, refreshed by :meth:`sync_weights`.
        suppress_eos: never sample EOS (every completion runs to ``max_new_tokens``; for benchmarks).
        use_graphs: capture the decode step (default: on CUDA).
        compile: also capture a ``torch.compile``d decode step and keep whichever graph replays faster
            (CUDA graphs only; the first rollout of each batch shape then takes tens of seconds, cached
            by Inductor on disk). Only for rollouts of at least ``COMPILE_MIN_NEW_TOKENS`` new tokens:
            the compiled step saves about 2 ms per token (H200), which repays the compile only over long
            responses. ``graph_timing`` holds both replay times in milliseconds.
        max_prompt: prompts longer than this many tokens keep their last ``max_prompt`` tokens (as the
            transformers engine does).

    Raises:
        UnsupportedModelError: the architecture is not supported (see :func:`check_supported`).
    """

    def __init__(self, model: nn.Module, tokenizer, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, suppress_eos: bool = False, use_graphs: bool | None = None,
                 compile: bool = True, max_prompt: int | None = None):
        check_supported(model)
        self.tokenizer = tokenizer
        first = next(unwrap_model(model).parameters())
        self.device = torch.device(device) if device is not None else first.device
        self.dtype = dtype or first.dtype
        self.suppress_eos = suppress_eos
        self.use_graphs = (self.device.type == "cuda") if use_graphs is None else use_graphs
        self.compile = compile
        self.max_prompt = max_prompt
        self.pad_id = pad_token_id(tokenizer)
        self._shapes: OrderedDict[tuple[int, int], _Shape] = OrderedDict()
        self.last_timing: dict[str, float] = {}
        self.graph_timing: dict[str, float] = {}
        self._bind(model)
        self.eos_ids = self._eos_ids()

    def _bind(self, model: nn.Module) -> None:
        """Decode with ``model``'s modules, or with a whole copy in ``self.dtype`` when its parameters are
        sharded or in another dtype (collective under FSDP2: every rank must bind at the same point)."""
        self.source = unwrap_model(model)
        self._shapes.clear()
        params = list(self.source.parameters())
        self._sharded = any(is_dtensor(p) for p in params)
        if not self._sharded and params[0].dtype == self.dtype:
            self.model, self._pairs = self.source, []
            return
        self.model = replica(self.source, self.device, self.dtype)
        self._pairs = paired_parameters(self.model, self.source)
        self._refresh()

    @torch.no_grad()
    def _refresh(self) -> None:
        """Copy every source parameter into the engine's copy (all-gathered one at a time when sharded)."""
        if self._sharded:
            for mine, theirs in self._pairs:
                mine.copy_(whole(theirs))
        else:
            torch._foreach_copy_([m for m, _ in self._pairs], [t for _, t in self._pairs])

    def _eos_ids(self) -> torch.Tensor:
        ids = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        gen = getattr(self.source, "generation_config", None)
        extra = getattr(gen, "eos_token_id", None) if gen is not None else None
        if isinstance(extra, int):
            ids.add(extra)
        elif extra:
            ids.update(int(i) for i in extra)
        return torch.tensor(sorted(ids), dtype=torch.long, device=self.device)

    @torch.no_grad()
    def sync_weights(self, model: nn.Module) -> None:
        """Sample from ``model``'s current weights from now on.

        The same model: nothing to do when the engine decodes with its modules, else an in-place copy of
        every parameter into the engine's own copy. A different model object is bound afresh (its graphs are
        captured again on the next rollout). Under FSDP2 this is a collective (one all-gather per
        parameter): call it on every rank, as the trainers do after each optimizer step.
        """
        inner = unwrap_model(model)
        if inner is not self.source:
            check_supported(inner)
            self._bind(inner)
        elif self.model is not self.source:
            self._refresh()

    def _runner(self, batch: int, max_len: int, sampling: Sampling, compile: bool
                ) -> tuple[StaticDecoder, StepRunner]:
        """The decoder of shape ``(batch, max_len)`` and its step runner for ``sampling``, built on first use.

        On CUDA the first runner of a shape is captured with the eager step and, with ``compile``, also with
        the compiled one; the faster is kept (``graph_timing``) and later runners of the shape use its step.
        A capture that fails leaves that shape decoding eagerly, with a warning.
        """
        key = (batch, max_len)
        if key not in self._shapes:
            while len(self._shapes) >= MAX_CACHED_SHAPES:
                self._shapes.popitem(last=False)
            self._shapes[key] = _Shape(StaticDecoder(self.model, batch, max_len, self.dtype, self.device))
        self._shapes.move_to_end(key)
        shape = self._shapes[key]
        if sampling not in shape.runners:
            with _rng_kept(self.device):  # warm-up and timing replays draw random numbers: not the rollout's
                shape.runners[sampling] = self._build_runner(shape, sampling, compile)
        return shape.decoder, shape.runners[sampling]

    def _build_runner(self, shape: _Shape, sampling: Sampling, compile: bool) -> StepRunner:
        decoder = shape.decoder

        def make(step_fn, capture: bool, compiled: bool = False) -> StepRunner:
            return StepRunner(DecodeState(decoder, sampling, self.eos_ids, self.pad_id), step_fn, capture, compiled)

        if not self.use_graphs:
            return make(decoder.forward, capture=False)
        try:
            if shape.step_fn is not None:
                runner = make(shape.step_fn, True, shape.compiled)
            else:
                runner = self._fastest(decoder, make, compile)
                shape.step_fn, shape.compiled = runner.step_fn, runner.compiled
        except Exception as err:  # noqa: BLE001 - a capture failure must not lose the rollout: decode eagerly
            warnings.warn(f"capturing the decode-and-sample step in a CUDA graph failed ({type(err).__name__}: "
                          f"{err}); this shape decodes eagerly, several times slower", RuntimeWarning, stacklevel=3)
            runner = make(decoder.forward, capture=False)
        decoder.reset()
        return runner

    def _fastest(self, decoder: StaticDecoder, make, compile: bool) -> StepRunner:
        """The captured runner of the eager step, or of the compiled one when that replays faster."""
        runner = make(decoder.forward, True)
        self.graph_timing = {"eager_graph_ms": runner.replay_ms()}
        if not compile:
            return runner
        try:
            compiled = make(torch.compile(decoder.forward, dynamic=False), True, compiled=True)
        except Exception as err:  # noqa: BLE001 - Inductor/Triton failures vary by version; the eager graph works
            warnings.warn(f"torch.compile of the decode step failed ({type(err).__name__}: {err}); "
                          "keeping the eager graph", RuntimeWarning, stacklevel=4)
            return runner
        self.graph_timing["compiled_graph_ms"] = compiled.replay_ms()
        return compiled if self.graph_timing["compiled_graph_ms"] < self.graph_timing["eager_graph_ms"] else runner

    def _encode(self, prompts: list[str]) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
        """Left-padded prompt ids ``[P, L]`` and a ``[P, L]`` bool mask of real tokens."""
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        if self.max_prompt is not None:
            ids = [x[-self.max_prompt:] for x in ids]
        if any(len(x) == 0 for x in ids):
            raise ValueError("a prompt encodes to zero tokens; every prompt needs at least one token")
        width = max(len(x) for x in ids)
        padded = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        real = torch.zeros(len(ids), width, dtype=torch.bool)
        for row, x in enumerate(ids):
            padded[row, width - len(x):] = torch.tensor(x, dtype=torch.long)
            real[row, width - len(x):] = True
        return ids, padded.to(self.device), real.to(self.device)

    @torch.no_grad()
    def generate(self, prompts: list[str], *, n: int, max_new_tokens: int, temperature: float,
                 top_p: float, top_k: int, seed: int) -> RolloutBatch:
        """Sample ``n`` completions of each prompt (rows grouped per prompt: ``prompt0 x n, prompt1 x n, ...``).

        Returns a :class:`RolloutBatch` of ``len(prompts) * n`` rows; completions include their EOS token;
        ``truncated`` is true where no EOS came within ``max_new_tokens``. The device's default random
        generator is seeded with ``seed`` for the rollout and restored afterwards.

        Raises:
            ValueError: ``n`` or ``max_new_tokens`` below 1, or an empty prompt.
        """
        if n < 1 or max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got n={n}, max_new_tokens={max_new_tokens}")
        prompt_ids, padded, real = self._encode(prompts)
        width = padded.shape[1]
        batch = len(prompts) * n
        max_len = _SLOT_ROUND * math.ceil((width + max_new_tokens) / _SLOT_ROUND)
        sampling = Sampling(float(temperature), float(top_p), int(top_k or 0), self.suppress_eos)
        compile = self.compile and max_new_tokens >= COMPILE_MIN_NEW_TOKENS
        with _seeded(self.device, seed):
            decoder, runner = self._runner(batch, max_len, sampling, compile)
            timing = _Timer(self.device)
            decoder.reset()
            positions = (real.long().cumsum(dim=1) - 1).clamp(min=0)
            logits = self._prefill(decoder, padded, positions, real, n)
            timing.mark("prefill_s")
            runner.state.start(width, positions[:, -1:].repeat_interleave(n, dim=0) + 1)
            runner.state.record(logits)
            rows = LiveRows(decoder, runner, batch)
            steps = 1
            while steps < max_new_tokens:
                if steps % SYNC_EVERY == 0 and not self._keep_going(rows, max_new_tokens - steps, sampling):
                    break
                rows.runner.step()
                steps += 1
            timing.mark("decode_s")
        tokens, logprobs = (t[:, width:width + steps].cpu() for t in rows.outputs())
        batch_out = self._collect(prompt_ids, n, tokens, logprobs)
        timing.mark("collect_s")
        self.last_timing = dict(timing.marks, decode_steps=float(steps), rows=float(batch), **self.graph_timing,
                                compiled=float(runner.compiled), compactions=float(rows.moves))
        return batch_out

    def _keep_going(self, rows: LiveRows, remaining: int, sampling: Sampling) -> bool:
        """False when every row has finished; else compact the live rows when they fit half the batch."""
        live = (~rows.runner.state.finished).nonzero().flatten()
        if live.numel() == 0:
            return False
        size = compact_size(live.numel(), rows.total)
        if size <= rows.decoder.batch // 2 and remaining >= COMPACT_MIN_STEPS:
            compile = rows.runner.compiled and remaining >= COMPILE_MIN_NEW_TOKENS
            decoder, runner = self._runner(size, rows.decoder.max_len, sampling, compile)
            rows.move(live, decoder, runner)
        return True

    def _prefill(self, decoder: StaticDecoder, padded: torch.Tensor, positions: torch.Tensor,
                 real: torch.Tensor, n: int) -> torch.Tensor:
        """Run each prompt once, repeat its cache rows ``n`` times; return ``[P*n, V]`` next-token logits."""
        prompts, width = padded.shape
        slots = torch.arange(width, device=self.device)
        if n == 1:
            return decoder.forward(padded, positions, slots, real)
        unique = StaticDecoder(self.model, prompts, decoder.max_len, decoder.dtype, decoder.device)
        logits = unique.forward(padded, positions, slots, real)
        for mine, theirs in zip(decoder.keys + decoder.values, unique.keys + unique.values):
            mine[:, :, :width].copy_(theirs[:, :, :width].repeat_interleave(n, dim=0))
        decoder.valid[:, :width].copy_(unique.valid[:, :width].repeat_interleave(n, dim=0))
        return logits.repeat_interleave(n, dim=0)

    def _collect(self, prompt_ids: list[list[int]], n: int, tokens: torch.Tensor,
                 logprobs: torch.Tensor) -> RolloutBatch:
        eos = set(self.eos_ids.tolist())
        completions, lps, truncated = [], [], []
        for row in range(tokens.shape[0]):
            ids = tokens[row].tolist()
            end = next((i + 1 for i, t in enumerate(ids) if t in eos), None)
            truncated.append(end is None)
            end = len(ids) if end is None else end
            completions.append(ids[:end])
            lps.append(logprobs[row, :end].tolist())
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        prompts_rep = [list(p) for p in prompt_ids for _ in range(n)]
        return RolloutBatch(prompt_ids=prompts_rep, completion_ids=completions, completion_logprobs=lps,
                            truncated=truncated, texts=texts)


class _Timer:
    """Wall-clock marks (seconds) with a device synchronisation before each, so GPU work is counted."""

    def __init__(self, device: torch.device):
        self._clock = time.perf_counter
        self._device = device
        self._last = self._clock()
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        now = self._clock()
        self.marks[name] = now - self._last
        self._last = now
