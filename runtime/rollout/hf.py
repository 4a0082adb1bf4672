"""Rollouts through transformers ``generate``, reproducible for a seed, with sampler log-probs.

transformers samples with the global RNG (``torch.multinomial`` without a generator) and its
``output_scores`` keeps a ``[rows, V]`` tensor per step. Instead, generation runs in greedy mode with one
extra logits processor, :class:`SeededSampler`, which applies temperature, top-k and top-p itself, draws the
next token with a private ``torch.Generator`` and records that token's log-prob under the distribution it
was drawn from; it then returns scores whose arg-max is the drawn token, so ``generate``'s greedy pick
takes it. Everything else (KV cache, static cache on CUDA, EOS handling, padding of finished rows) stays
with transformers.

Under bf16 mixed precision (fp32 master weights, the forward under autocast) the engine decodes from its own
bf16 copy of the policy, refreshed in place by ``sync_weights`` after each optimizer step, as the fast
engine does on CUDA: autocast around each decode step would convert every weight to bf16 again at every
generated token, which on a CPU made generation 1.12-1.36x slower than fp32 instead of ~0.6x (issue 16).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from runtime.logprobs import last_position, unwrap_model
from runtime.rollout.base import RolloutBatch
from runtime.replica import paired_parameters, replica


class SeededSampler(LogitsProcessor):
    """Temperature -> top-k -> top-p filtering (the order of transformers and vLLM), then a draw.

    ``temperature == 0`` picks the arg-max and records the log-prob under the untempered model
    (temperature 1): a point mass would record 0 for every token, which no importance ratio can use.
    ``logprobs`` collects one ``[rows]`` fp32 tensor per generated position.
    """

    def __init__(self, *, temperature: float, top_p: float, top_k: int, generator: torch.Generator) -> None:
        if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
            raise ValueError(f"bad sampling parameters: temperature={temperature} (>= 0), top_p={top_p} "
                             f"(in (0, 1]), top_k={top_k} (>= 0)")
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.generator = generator
        self.logprobs: list[torch.Tensor] = []

    def warp(self, scores: torch.Tensor) -> torch.Tensor:
        """``[rows, V]`` raw logits -> filtered, tempered logits (removed tokens at ``-inf``)."""
        logits = scores.float()
        if self.temperature > 0:
            logits = logits / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
            probs = torch.softmax(sorted_logits, dim=-1)
            # Drop a token when the tokens ranked above it already hold top_p of the mass; the first stays.
            drop_sorted = (probs.cumsum(dim=-1) - probs) >= self.top_p
            drop = drop_sorted.scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        return logits

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(self.warp(scores), dim=-1)
        if self.temperature == 0:
            chosen = logp.argmax(dim=-1)
        else:
            chosen = torch.multinomial(logp.exp(), 1, generator=self.generator).squeeze(1)
        self.logprobs.append(logp.gather(-1, chosen.unsqueeze(1)).squeeze(1))
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, chosen.unsqueeze(1), 0.0)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if not ids:
        raise ValueError("neither the model's generation config nor the tokenizer names an EOS token\n"
                         "help: set `eos_token_id` in generation_config.json or `eos_token` in the tokenizer")
    return sorted(ids)


def _cache_name(model: Any) -> str:
    """The KV cache's argument and output name: ``cache`` since transformers 5.2x renamed it (the old name,
    ``past_key_values``, still works there but warns on every call), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class HFRolloutEngine:
    """A :class:`~runtime.rollout.base.RolloutEngine` on transformers ``generate``.

    Args:
        model: the policy (a DDP/accelerate wrapper is unwrapped); it is switched to eval mode while
            generating and back afterwards.
        tokenizer: its tokenizer; prompts are tokenised without adding special tokens (they are already
            chat-rendered) and left-padded.
        max_prompt: prompts longer than this many tokens keep their last ``max_prompt`` tokens.
        batch_rows: at most this many rows (prompts x n) per ``generate`` call, bounding KV-cache memory.
        static_cache: use ``cache_implementation="static"`` on CUDA (fixed-shape KV cache, fewer
            allocations; pays off with ``torch.compile``); ignored on CPU.
        dtype: decode in this dtype; when the policy's parameters have another one (fp32 master weights
            under bf16 autocast) the engine keeps its own copy in ``dtype`` (2 bytes a parameter for bf16).
            ``None``: decode with the policy itself.
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_prompt: int | None = None, batch_rows: int = 64,
                 static_cache: bool = False, dtype: torch.dtype | None = None) -> None:
        self.dtype = dtype
        self._bind(model)
        self.tokenizer = tokenizer
        self.max_prompt = max_prompt
        self.batch_rows = max(1, batch_rows)
        self.static_cache = static_cache
        self.eos_ids = _eos_ids(self.model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]

    def _bind(self, model: Any) -> None:
        self.model = unwrap_model(model)
        self.decoder, self._pairs = self.model, []
        param = next(self.model.parameters())
        if self.dtype is not None and param.dtype != self.dtype:
            self.decoder = replica(self.model, param.device, self.dtype)
            self._pairs = paired_parameters(self.decoder, self.model)
            self._refresh()

    @torch.no_grad()
    def _refresh(self) -> None:
        if self._pairs:
            torch._foreach_copy_([m for m, _ in self._pairs], [t for _, t in self._pairs])

    def sync_weights(self, model: Any) -> None:
        """Sample from ``model``'s current weights from now on. Without a copy nothing moves (the engine
        samples from the very module the optimizer updates in place); with one, every parameter is copied
        into it (one fused ``_foreach_copy_``). A different module is bound afresh."""
        if unwrap_model(model) is not self.model:
            self._bind(model)
        else:
            self._refresh()

    def _encode(self, prompts: list[str]) -> list[list[int]]:
        encoded = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        if self.max_prompt is not None:
            encoded = [ids[-self.max_prompt:] for ids in encoded]
        return encoded

    @torch.no_grad()
    def generate(self, prompts: list[str], *, n: int, max_new_tokens: int, temperature: float,
                 top_p: float, top_k: int, seed: int) -> RolloutBatch:
        """Sample ``n`` completions of each prompt (rows group-contiguous); see ``RolloutEngine.generate``.

        Raises:
            ValueError: ``n < 1``, ``max_new_tokens < 1`` or bad sampling parameters.
        """
        if n < 1 or max_new_tokens < 1:
            raise ValueError(f"n ({n}) and max_new_tokens ({max_new_tokens}) must be at least 1")
        device = next(self.decoder.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        sampler = SeededSampler(temperature=temperature, top_p=top_p, top_k=top_k, generator=generator)
        rows = [ids for ids in self._encode(prompts) for _ in range(n)]
        # Neutral values set explicitly: generate fills only unset fields from the model's
        # generation_config.json, whose repetition penalty would otherwise change the sampled distribution.
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids, repetition_penalty=1.0, no_repeat_ngram_size=0,
            cache_implementation="static" if self.static_cache and device.type == "cuda" else None,
        )
        batch = RolloutBatch(prompt_ids=rows, completion_ids=[], completion_logprobs=[], truncated=[], texts=[])
        was_training = self.decoder.training
        self.decoder.eval()
        try:
            for start in range(0, len(rows), self.batch_rows):
                self._generate_chunk(rows[start:start + self.batch_rows], config, sampler, device, batch)
        finally:
            self.decoder.train(was_training)
        return batch

    def _left_padded(self, rows: list[list[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            attention[i, width - len(r):] = 1
        return input_ids, attention

    def _shared_prefill(self, rows: list[list[int]], width: int, device: torch.device) -> Any | None:
        """The KV cache of every row's prompt but its last token, computed once per distinct prompt and
        repeated for the rows that share it (a GRPO group's ``n`` rollouts), or ``None`` when no two
        consecutive rows share a prompt. ``generate`` then runs only the last prompt token and the decode.
        Positions follow the attention mask, as ``generate`` numbers them. A 64-row step of 8 prompts x 8
        rollouts prefills 8 rows instead of 64."""
        starts = torch.tensor([i == 0 or rows[i] != rows[i - 1] for i in range(len(rows))])
        if bool(starts.all()) or width < 2 or (self.static_cache and device.type == "cuda"):
            return None
        ids, attention = self._left_padded([r for r, first in zip(rows, starts.tolist()) if first], width)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        prefix = ids[:, :-1].to(device)
        out = self.decoder(input_ids=prefix, attention_mask=attention[:, :-1].to(device),
                           position_ids=positions[:, :-1].to(device), use_cache=True,
                           logits_to_keep=last_position(prefix))
        cache = out[_cache_name(self.decoder)]
        cache.batch_select_indices((starts.cumsum(0) - 1).to(device))  # each row's distinct prompt
        return cache

    def _generate_chunk(self, rows: list[list[int]], config: GenerationConfig, sampler: SeededSampler,
                        device: torch.device, batch: RolloutBatch) -> None:
        width = max(len(r) for r in rows)
        input_ids, attention = self._left_padded(rows, width)
        sampler.logprobs = []
        cache = self._shared_prefill(rows, width, device)
        out = self.decoder.generate(
            input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config,
            logits_processor=LogitsProcessorList([sampler]), **({_cache_name(self.decoder): cache} if cache else {}),
        )
        generated = out[:, width:].cpu()
        # generate may run (and then undo) extra steps past the last kept token; keep the first ones.
        logprobs = torch.stack(sampler.logprobs[: generated.shape[1]], dim=1).cpu()
        eos = torch.tensor(self.eos_ids)
        for i in range(len(rows)):
            hits = torch.isin(generated[i], eos).nonzero()
            length = int(hits[0]) + 1 if len(hits) else generated.shape[1]
            ids = generated[i, :length].tolist()
            batch.completion_ids.append(ids)
            batch.completion_logprobs.append(logprobs[i, :length].tolist())
            batch.truncated.append(not len(hits))
            batch.texts.append(self.tokenizer.decode(ids, skip_special_tokens=True))
