"""One decode step of the fast rollout engine with the sampling inside it, so that a whole step can be one
CUDA-graph replay.

A step decodes the token each row sampled last (``StaticDecoder.forward``), samples the next one
(temperature, top-k, top-p), and records it and its log-prob at the current cache slot, all on static
tensors of a :class:`DecodeState`: the host issues one replay per token and reads nothing back (it checks
for finished rows every few steps only). Before this, sampling ran outside the graph as ~15 separate launches
on ``[B, V]`` logits per token (H200, SmolLM2-135M shape, 128 rows: 2.4 ms per token, 2.0 ms of it the
graph replay; bench/results/gpu-vs-trl.md).

Random numbers come from the device's default generator, which CUDA graphs capture (each replay advances
its Philox offset by what the captured kernels consume, as eager calls would): the engine seeds it per
rollout and restores it afterwards, so a seed fixes the rollout, and a graph replay draws what the same step
run eagerly would draw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from runtime.rollout.decoder import StaticDecoder

StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Sampling:
    """The sampling settings baked into a captured step (one graph per distinct setting)."""

    temperature: float
    top_p: float
    top_k: int
    suppress_eos: bool


def sample_tokens(logits: torch.Tensor, *, temperature: float, top_p: float,
                  top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row and return ``(tokens [B] int64, logprobs [B] fp32)``.

    The log-prob is that of the distribution the token was drawn from (``softmax(logits / temperature)``
    truncated by top-k and top-p and renormalised), as ``RolloutBatch`` specifies; with top-k and top-p off
    it equals ``runtime.logprobs.token_logprobs`` at the same temperature. ``temperature == 0`` is greedy
    decoding (log-probs at temperature 1). Sampling uses ``argmax(p / E)``, ``E ~ Exp(1)`` drawn from the
    default generator of ``logits``' device, which draws from ``p`` exactly and needs no host
    synchronisation (so it can run inside a CUDA graph).
    """
    logits = logits.float()
    if temperature <= 0:
        tokens = logits.argmax(dim=-1)
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
        return tokens, logprobs
    filtered = logits / temperature
    if top_k and 0 < top_k < filtered.shape[-1]:
        kth = torch.topk(filtered, top_k, dim=-1).values[:, -1:]
        filtered = filtered.masked_fill(filtered < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(filtered, dim=-1, descending=True)
        probs_sorted = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass (keeps at least one).
        drop_sorted = (probs_sorted.cumsum(dim=-1) - probs_sorted) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        filtered = filtered.masked_fill(drop, float("-inf"))
    logp = torch.log_softmax(filtered, dim=-1)
    probs = logp.exp()
    race = torch.empty_like(probs).exponential_()
    tokens = (probs / race).argmax(dim=-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


class DecodeState:
    """The static tensors one rollout on ``decoder`` reads and writes, and the step over them.

    ``ids`` ``[B, 1]`` (each row's last sampled token), ``positions`` ``[B, 1]`` (its position), ``slot``
    ``[1]`` (its cache slot), ``finished`` ``[B]``; ``tokens`` / ``logprobs`` ``[B, T_max]`` hold the sampled
    token of each slot (pad / 0 where none, and after a row's EOS).
    """

    def __init__(self, decoder: StaticDecoder, sampling: Sampling, eos_ids: torch.Tensor, pad_id: int):
        b, t, dev = decoder.batch, decoder.max_len, decoder.device
        self.sampling, self.eos_ids, self.pad_id, self.max_len = sampling, eos_ids, pad_id, t
        self.ids = torch.zeros(b, 1, dtype=torch.long, device=dev)
        self.positions = torch.zeros(b, 1, dtype=torch.long, device=dev)
        self.slot = torch.zeros(1, dtype=torch.long, device=dev)
        self.real = torch.ones(b, 1, dtype=torch.bool, device=dev)
        self.finished = torch.zeros(b, dtype=torch.bool, device=dev)
        self.tokens = torch.full((b, t), pad_id, dtype=torch.long, device=dev)
        self.logprobs = torch.zeros(b, t, dtype=torch.float32, device=dev)
        self.park()

    def park(self) -> None:
        """Point the slot where one untimed step stays inside the cache (warm-up and timing replays)."""
        self.slot.fill_(self.max_len - 2)

    def start(self, slot: int, positions: torch.Tensor) -> None:
        """A new rollout whose first sampled token goes to cache slot ``slot`` at ``positions`` ``[B, 1]``."""
        self.slot.fill_(slot)
        self.positions.copy_(positions)
        self.finished.zero_()
        self.tokens.fill_(self.pad_id)
        self.logprobs.zero_()

    def record(self, logits: torch.Tensor) -> None:
        """Sample from ``logits`` ``[B, V]`` and record each row's token at the current slot."""
        s = self.sampling
        if s.suppress_eos:
            logits = logits.index_fill(-1, self.eos_ids, float("-inf"))
        tok, lp = sample_tokens(logits, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k)
        tok = tok.masked_fill(self.finished, self.pad_id)
        self.tokens.index_copy_(1, self.slot, tok[:, None])
        self.logprobs.index_copy_(1, self.slot, lp.masked_fill(self.finished, 0.0)[:, None])
        self.finished |= (tok[:, None] == self.eos_ids[None, :]).any(dim=-1)
        self.ids.copy_(tok[:, None])

    def advance(self, step_fn: StepFn) -> None:
        """Decode the last sampled tokens into the cache, move to the next slot, sample and record."""
        logits = step_fn(self.ids, self.positions, self.slot, self.real)
        self.positions += 1
        self.slot += 1
        self.record(logits)

    def take(self, other: DecodeState, rows: torch.Tensor, padding: torch.Tensor) -> None:
        """Continue ``other``'s rollout for its rows ``rows`` (``[B]`` int64); rows where ``padding`` is true
        only fill the batch and count as finished (batch compaction)."""
        for name in ("ids", "positions", "tokens", "logprobs", "finished"):
            getattr(self, name).copy_(getattr(other, name).index_select(0, rows))
        self.finished |= padding
        self.slot.copy_(other.slot)


class StepRunner:
    """Runs ``state.advance(step_fn)``: as one CUDA-graph replay when ``capture``, else eagerly.

    Capture runs the step three times on a side stream first (compilation, cuBLAS workspaces and allocator
    blocks happen before capture, as ``torch.cuda.graphs`` requires). Raises what capture raises.
    """

    def __init__(self, state: DecodeState, step_fn: StepFn, capture: bool, compiled: bool = False):
        self.state, self.step_fn, self.compiled = state, step_fn, compiled
        self.graph = self._capture() if capture else None

    def _capture(self) -> torch.cuda.CUDAGraph:
        dev = self.state.slot.device
        stream = torch.cuda.Stream(device=dev)
        stream.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(stream):
            for _ in range(3):
                self.state.park()
                self.state.advance(self.step_fn)
        torch.cuda.current_stream(dev).wait_stream(stream)
        self.state.park()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.state.advance(self.step_fn)
        return graph

    def step(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.state.advance(self.step_fn)

    def replay_ms(self, repeats: int = 10) -> float:
        """Median milliseconds of one replay (CUDA events, after three untimed replays)."""
        times = []
        for i in range(repeats + 3):
            self.state.park()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self.graph.replay()
            end.record()
            end.synchronize()
            if i >= 3:
                times.append(start.elapsed_time(end))
        return sorted(times)[len(times) // 2]
