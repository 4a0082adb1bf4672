"""Fast rollouts for Llama-family policies: a static KV cache and a CUDA-graph-captured decode step.

``transformers.generate`` spends most of a small model's rollout time launching kernels from Python: at
batch 128 x 256 new tokens on one H200 the SmolLM2-135M architecture took 6.4 s with the dynamic cache and
1.34 s with ``cache_implementation="static"`` (issue 6), and ``torch.compile(mode="reduce-overhead")``
around ``forward`` fails with "CUDA-graph output overwritten". This engine owns the decode loop instead:

* one static KV cache per batch shape, ``[B, kv_heads, T_max, head_dim]`` per layer, written in place with
  ``index_copy_`` at a slot index held in a tensor, so the step has no Python-side shape or position;
* the decode step (embedding, every layer, final norm and head for one new token) is captured once per
  ``(B, T_max)`` into a ``torch.cuda.CUDAGraph`` and replayed: one launch per token instead of ~45 per
  layer. A graph still runs every kernel, so fusing them matters too: the engine also captures a
  ``torch.compile``d step and keeps the faster (H200, SmolLM2-135M shape, batch 128: 4.35 ms eager,
  2.01 ms compiled per token). Its inputs are static tensors updated in place and its output is copied
  out after each replay (the cause of the overwritten-output error);
* each prompt is pre-filled once and its cache rows are repeated ``n`` times for the group;
* sampling (temperature, top-k, top-p) runs outside the graph with the exponential-race form of sampling
  (``argmax(p / E)`` with ``E ~ Exp(1)``, the Gumbel-max trick), which needs no host synchronisation;
  finished rows are checked every ``SYNC_EVERY`` steps only.

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

import math
import time
import warnings
from collections import OrderedDict

import torch
from torch import nn

from cascadec.contract.errors import UserError
from runtime.logprobs import pad_token_id, unwrap_model
from runtime.rollout.base import RolloutBatch

SUPPORTED_MODEL_TYPES = frozenset({"llama", "qwen2", "qwen3", "mistral"})
SYNC_EVERY = 32
MAX_CACHED_SHAPES = 4
_SLOT_ROUND = 64
# Shortest rollout (new tokens) for which the compiled decode step is tried (see ``FastRolloutEngine``):
# at 16 tokens a compile of ~30 s would save ~3 s over a 100-step stage.
COMPILE_MIN_NEW_TOKENS = 128


class UnsupportedModelError(UserError, ValueError):
    """The policy's architecture is not one this engine implements (use the transformers engine)."""


def check_supported(model: nn.Module) -> None:
    """Raise :class:`UnsupportedModelError` unless ``model`` is a Llama-family causal LM this engine runs.

    Supported: model types in :data:`SUPPORTED_MODEL_TYPES` with full (not sliding-window) attention, no
    logit soft-capping and the standard ``model.model.{embed_tokens, layers, norm, rotary_emb}`` layout.
    """
    inner = unwrap_model(model)
    cfg = inner.config
    if cfg.model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"the fast rollout engine supports {sorted(SUPPORTED_MODEL_TYPES)}, not `{cfg.model_type}`; "
            "help: set `engine = hf` in the stage's resources"
        )
    if "sliding_attention" in (getattr(cfg, "layer_types", None) or []):
        raise UnsupportedModelError("the fast rollout engine does not implement sliding-window attention")
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "attn_logit_softcapping", None):
        raise UnsupportedModelError("the fast rollout engine does not implement logit soft-capping")
    base = getattr(inner, "model", None)
    for name in ("embed_tokens", "layers", "norm", "rotary_emb"):
        if not hasattr(base, name):
            raise UnsupportedModelError(f"`{type(inner).__name__}.model` has no `{name}`; not a Llama-family layout")


def _is_dtensor(tensor: torch.Tensor) -> bool:
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def _whole(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` whole on this rank: a ``DTensor`` is all-gathered (a collective every rank must join)."""
    return tensor.full_tensor() if _is_dtensor(tensor) else tensor


def _plain_class(model: nn.Module) -> type:
    """``model``'s own class: FSDP2's ``fully_shard`` swaps in a subclass ``FSDP<Name>`` whose instances
    gather their parameters in ``forward``; the decode copy must be the plain class."""
    if torch.distributed.is_available():
        from torch.distributed.fsdp import FSDPModule

        return next(c for c in type(model).__mro__ if issubclass(c, nn.Module) and not issubclass(c, FSDPModule))
    return type(model)


@torch.no_grad()
def _decode_copy(source: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """An empty whole copy of the transformers model ``source`` for decoding: parameters ``dtype`` on ``device``
    (uninitialised: the engine fills them through :func:`_paired_parameters`), no gradients, eval mode.

    Built from ``source.config`` rather than by ``copy.deepcopy``, which would copy an FSDP2 module's
    ``DTensor`` shards and hooks. Parameters are created on the meta device and allocated once here,
    tied ones (the head and the embedding) as one tensor; buffers (rotary ``inv_freq``) are computed from
    the config on ``device``, then take the source's values in their own dtype (fp32 ``inv_freq``, which
    transformers' rotary embedding computes in; the old ``deepcopy(...).to(bf16)`` rounded it to bf16).
    """
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = _plain_class(source)(source.config)
    # init_empty_weights registers every parameter afresh, which unties the head from the embedding.
    model.tie_weights()
    allocated: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if id(param) not in allocated:
                allocated[id(param)] = nn.Parameter(torch.empty(param.shape, dtype=dtype, device=device),
                                                    requires_grad=False)
            setattr(module, name, allocated[id(param)])
    model.to(device)
    theirs = dict(source.named_buffers())
    for name, buffer in model.named_buffers():
        if name in theirs:
            buffer.copy_(_whole(theirs[name]))
    return model.eval()


def _paired_parameters(replica: nn.Module, source: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(replica's parameter, source's parameter)`` by name, in the source's order (the same on every rank,
    which the per-parameter all-gathers of an FSDP2 source need).

    Raises:
        RuntimeError: the two models do not have the same parameter names (e.g. the source's head and
            embedding are no longer tied while its config says they are).
    """
    mine, theirs = dict(replica.named_parameters()), dict(source.named_parameters())
    if mine.keys() != theirs.keys():
        raise RuntimeError(
            "the fast rollout engine's copy of the policy does not match the policy's parameters: "
            f"only in the copy {sorted(mine.keys() - theirs.keys())}, only in the policy "
            f"{sorted(theirs.keys() - mine.keys())}; help: set CASCADEC_FAST_ROLLOUT=0 to use transformers generate"
        )
    return [(mine[name], param) for name, param in theirs.items()]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class StaticDecoder:
    """A Llama-family forward pass over a static KV cache, built from the policy's own modules.

    ``forward(ids, positions, slots, real)`` runs ``S`` new tokens per row through every layer:
    ``ids``/``positions`` are ``[B, S]`` int64, ``slots`` ``[S]`` int64 cache indices (shared by all rows:
    prompts are left-padded), ``real`` ``[B, S]`` bool (false for padding, whose keys are never attended
    to). It returns the logits of the last position, ``[B, V]`` in the compute dtype.
    Attention (Vaswani et al. 2017, Eq. 1) with grouped key/value heads is computed with one batched
    matmul per layer over the whole cache, masked to the slots written so far.
    """

    def __init__(self, model: nn.Module, batch: int, max_len: int, dtype: torch.dtype, device: torch.device):
        check_supported(model)
        self.model = unwrap_model(model)
        cfg = self.model.config
        self.base = self.model.model
        self.head = self.model.get_output_embeddings()
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.batch, self.max_len, self.dtype, self.device = batch, max_len, dtype, device
        # One tensor per layer, not one [layers, ...] tensor: an in-place write into a view of a larger
        # input makes torch.compile copy the whole cache on every write (seen on an H200: 350 us per layer).
        shape = (batch, self.n_kv, max_len, self.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in self.base.layers]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in self.base.layers]
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.slot_index = torch.arange(max_len, device=device)

    def reset(self) -> None:
        """Forget every cached token (in place, so captured graphs stay valid)."""
        self.valid.zero_()

    def _attention(self, layer: nn.Module, idx: int, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   slots: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attn = layer.self_attn
        batch, seq, _ = x.shape
        q = attn.q_proj(x).view(batch, seq, self.n_heads, self.head_dim)
        k = attn.k_proj(x).view(batch, seq, self.n_kv, self.head_dim)
        v = attn.v_proj(x).view(batch, seq, self.n_kv, self.head_dim).transpose(1, 2)
        if hasattr(attn, "q_norm"):  # Qwen3 normalises each head before the rotary embedding
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        self.keys[idx].index_copy_(2, slots, k.to(self.dtype))
        self.values[idx].index_copy_(2, slots, v.to(self.dtype))
        group = self.n_heads // self.n_kv
        # [B, H, S, d] -> [B, kv, group*S, d]: the query heads that share a key/value head become rows of
        # one matmul against that head's cache, so the cache is read once and never repeated per group.
        qg = q.reshape(batch, self.n_kv, group * seq, self.head_dim).to(self.dtype)
        scale = getattr(attn, "scaling", None) or self.head_dim ** -0.5
        scores = torch.matmul(qg, self.keys[idx].transpose(-1, -2)).float() * scale
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(self.dtype)
        out = torch.matmul(probs, self.values[idx])
        out = out.reshape(batch, self.n_heads, seq, self.head_dim).transpose(1, 2).reshape(batch, seq, -1)
        return attn.o_proj(out.to(x.dtype))

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                real: torch.Tensor) -> torch.Tensor:
        batch, seq = ids.shape
        self.valid.index_copy_(1, slots, real)
        # Slot j is visible from query i when it holds a real token at or before i; every query also
        # sees itself, so a padding row has one finite score instead of a NaN softmax.
        visible = self.slot_index[None, :] <= slots[:, None]                      # [S, T]
        own = self.slot_index[None, :] == slots[:, None]
        mask = (self.valid[:, None, :] & visible[None]) | own[None]              # [B, S, T]
        group = self.n_heads // self.n_kv
        mask = mask[:, None, None].expand(batch, 1, group, seq, self.max_len).reshape(
            batch, 1, group * seq, self.max_len)
        x = self.base.embed_tokens(ids)
        cos, sin = self.base.rotary_emb(x, positions)
        for idx, layer in enumerate(self.base.layers):
            x = x + self._attention(layer, idx, layer.input_layernorm(x), cos, sin, slots, mask)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        last = self.base.norm(x[:, -1])
        return self.head(last)


class _DecodeGraph:
    """A decode step ``StaticDecoder.forward`` for one token captured as a CUDA graph.

    With ``compile`` the step is first compiled by ``torch.compile`` (Inductor fuses each layer's norms,
    rotary embedding, masking and softmax, about 45 kernels a layer down to about 12) and the compiled
    code is what the graph captures; if compilation fails the eager step is captured instead and
    ``compiled`` is false. The inputs (``ids``, ``positions`` ``[B, 1]``, ``slot`` ``[1]``) are static
    tensors: write them with ``copy_`` and call :meth:`replay`, which returns a fresh copy of the ``[B, V]``
    logits (a replay overwrites the graph's own output).
    """

    def __init__(self, decoder: StaticDecoder, compile: bool):
        dev = decoder.device
        self.decoder = decoder
        self.ids = torch.zeros(decoder.batch, 1, dtype=torch.long, device=dev)
        self.positions = torch.zeros(decoder.batch, 1, dtype=torch.long, device=dev)
        self.slot = torch.full((1,), decoder.max_len - 1, dtype=torch.long, device=dev)
        self.real = torch.ones(decoder.batch, 1, dtype=torch.bool, device=dev)
        self.compiled = False
        self.step_fn = decoder.forward
        if compile:
            try:
                self.step_fn = torch.compile(decoder.forward, dynamic=False)
                self._warm_up(dev)
                self.compiled = True
            except Exception as err:  # noqa: BLE001 - Inductor/Triton failures vary by version; eager capture still works
                warnings.warn(f"torch.compile of the decode step failed ({type(err).__name__}: {err}); "
                              "capturing the eager step", RuntimeWarning, stacklevel=2)
                self.step_fn = decoder.forward
        if not self.compiled:
            self._warm_up(dev)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.step_fn(self.ids, self.positions, self.slot, self.real)
        decoder.reset()

    def _warm_up(self, dev: torch.device) -> None:
        # On a side stream, as torch.cuda.graphs requires, so that compilation, lazy cuBLAS workspaces and
        # allocator blocks all happen before capture.
        stream = torch.cuda.Stream(device=dev)
        stream.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(stream):
            for _ in range(3):
                self.step_fn(self.ids, self.positions, self.slot, self.real)
        torch.cuda.current_stream(dev).wait_stream(stream)

    def replay(self) -> torch.Tensor:
        self.graph.replay()
        return self.logits.clone()


def _replay_ms(graph: _DecodeGraph, repeats: int = 10) -> float:
    """Median milliseconds of one replay of ``graph`` (CUDA events, after three untimed replays)."""
    for _ in range(3):
        graph.graph.replay()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def sample_tokens(logits: torch.Tensor, *, temperature: float, top_p: float, top_k: int,
                  generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row and return ``(tokens [B] int64, logprobs [B] fp32)``.

    The log-prob is that of the distribution the token was drawn from (``softmax(logits / temperature)``
    truncated by top-k and top-p and renormalised), as ``RolloutBatch`` specifies; with top-k and top-p off
    it equals ``runtime.logprobs.token_logprobs`` at the same temperature. ``temperature == 0`` is greedy
    decoding (log-probs at temperature 1). Sampling uses ``argmax(p / E)``, ``E ~ Exp(1)``, which draws from ``p`` exactly and
    needs no host synchronisation.
    """
    logits = logits.float()
    if temperature <= 0:
        tokens = logits.argmax(dim=-1)
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
        return tokens, logprobs
    scaled = logits / temperature
    filtered = scaled
    if top_k and 0 < top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        filtered = filtered.masked_fill(filtered < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(filtered, dim=-1, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass (keeps at least one).
        drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        filtered = filtered.masked_fill(drop, float("-inf"))
    logp = torch.log_softmax(filtered, dim=-1)
    probs = logp.exp()
    race = torch.empty_like(probs).exponential_(generator=generator)
    tokens = (probs / race).argmax(dim=-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


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
        self._shapes: OrderedDict[tuple[int, int], tuple[StaticDecoder, _DecodeGraph | None]] = OrderedDict()
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
        self._sharded = any(_is_dtensor(p) for p in params)
        if not self._sharded and params[0].dtype == self.dtype:
            self.model, self._pairs = self.source, []
            return
        self.model = _decode_copy(self.source, self.device, self.dtype)
        self._pairs = _paired_parameters(self.model, self.source)
        self._refresh()

    @torch.no_grad()
    def _refresh(self) -> None:
        """Copy every source parameter into the engine's copy (all-gathered one at a time when sharded)."""
        if self._sharded:
            for mine, theirs in self._pairs:
                mine.copy_(_whole(theirs))
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

    def _decoder(self, batch: int, max_len: int, compile: bool) -> tuple[StaticDecoder, _DecodeGraph | None]:
        key = (batch, max_len)
        if key in self._shapes:
            self._shapes.move_to_end(key)
            return self._shapes[key]
        while len(self._shapes) >= MAX_CACHED_SHAPES:
            self._shapes.popitem(last=False)
        decoder = StaticDecoder(self.model, batch, max_len, self.dtype, self.device)
        graph = None
        if self.use_graphs:
            with torch.no_grad():
                graph = _DecodeGraph(decoder, compile=False)
                self.graph_timing = {"eager_graph_ms": _replay_ms(graph)}
                if compile:
                    compiled = _DecodeGraph(decoder, compile=True)
                    if compiled.compiled:
                        self.graph_timing["compiled_graph_ms"] = _replay_ms(compiled)
                        if self.graph_timing["compiled_graph_ms"] < self.graph_timing["eager_graph_ms"]:
                            graph = compiled
                decoder.reset()
        self._shapes[key] = (decoder, graph)
        return decoder, graph

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
        ``truncated`` is true where no EOS came within ``max_new_tokens``.

        Raises:
            ValueError: ``n`` or ``max_new_tokens`` below 1, or an empty prompt.
        """
        if n < 1 or max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got n={n}, max_new_tokens={max_new_tokens}")
        prompt_ids, padded, real = self._encode(prompts)
        width = padded.shape[1]
        batch = len(prompts) * n
        max_len = _SLOT_ROUND * math.ceil((width + max_new_tokens) / _SLOT_ROUND)
        decoder, graph = self._decoder(batch, max_len, self.compile and max_new_tokens >= COMPILE_MIN_NEW_TOKENS)
        timing = _Timer(self.device)
        decoder.reset()
        positions = (real.long().cumsum(dim=1) - 1).clamp(min=0)
        logits = self._prefill(decoder, padded, positions, real, n)
        timing.mark("prefill_s")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        tokens_out = torch.full((batch, max_new_tokens), self.pad_id, dtype=torch.long, device=self.device)
        logprobs_out = torch.zeros(batch, max_new_tokens, dtype=torch.float32, device=self.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=self.device)
        next_pos = positions[:, -1:].repeat_interleave(n, dim=0) + 1
        ones = torch.ones(batch, 1, dtype=torch.bool, device=self.device)
        slot = torch.full((1,), width, dtype=torch.long, device=self.device)
        steps = 0
        for step in range(max_new_tokens):
            if self.suppress_eos:
                logits[:, self.eos_ids] = float("-inf")
            tok, lp = sample_tokens(logits, temperature=temperature, top_p=top_p, top_k=top_k,
                                    generator=generator)
            tok = tok.masked_fill(finished, self.pad_id)
            tokens_out[:, step] = tok
            logprobs_out[:, step] = lp.masked_fill(finished, 0.0)
            finished |= torch.isin(tok, self.eos_ids)
            steps = step + 1
            if step == max_new_tokens - 1:
                break
            if (step + 1) % SYNC_EVERY == 0 and bool(finished.all()):
                break
            if graph is not None:
                graph.ids.copy_(tok[:, None])
                graph.positions.copy_(next_pos)
                graph.slot.copy_(slot)
                logits = graph.replay()
            else:
                logits = decoder.forward(tok[:, None], next_pos, slot, ones)
            next_pos = next_pos + 1
            slot += 1
        timing.mark("decode_s")
        batch_out = self._collect(prompt_ids, n, tokens_out[:, :steps].cpu(), logprobs_out[:, :steps].cpu())
        timing.mark("collect_s")
        self.last_timing = dict(timing.marks, decode_steps=float(steps), rows=float(batch), **self.graph_timing,
                                compiled=float(bool(graph is not None and graph.compiled)))
        return batch_out

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
