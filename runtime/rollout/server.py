"""Rollouts sampled by a vLLM server over HTTP (``rollout = vllm(gpus = N)``, started by ``cascadec run``, or
``rollout = endpoint(...)``), behind the :class:`runtime.rollout.base.RolloutEngine` interface.

Sampling: one ``POST /v1/completions`` per prompt with its token ids (never text), ``n``, ``temperature``,
``top_p``, ``top_k``, ``max_tokens``, a seed of its own and ``logprobs = 0`` (the sampled token's log-prob),
``return_token_ids``; up to ``concurrency`` requests in flight, each retried on failure (`runtime.serving.client`).
Greedy decoding sends ``n`` copies of the prompt instead (vLLM refuses ``n > 1`` without sampling). The
log-probs are vLLM's ``processed_logprobs`` (after temperature, top-k and top-p), ``log pi_inf`` of the
importance ratio (``logp_mismatch``, ``is_correction``); a server that returns raw ones is refused when the
stage samples at another temperature than 1 or with a filter.

Weights, the way prime-rl moves them: :meth:`ServerRolloutEngine.sync_weights` only marks the served weights
stale; the next ``generate`` (every rank makes the same ``generate`` calls: `runtime.evals.rank_shard`) publishes
them first. Every rank takes part in gathering the state dict (FSDP2, ZeRO-3), rank 0 writes it as a safetensors
checkpoint into ``stages/<stage>/rollout_weights/`` (atomically, over the previous copy), then the reloading rank
(each node's first for a server per node, the first of all for an endpoint) asks its server to ``/pause`` (after
the requests in flight), reload in place from that directory (``/collective_rpc`` of cascadec's worker method,
`runtime.serving.vllm_ext`, else vLLM's own ``reload_weights``), ``/reset_prefix_cache``, take a new
``/update_weight_version`` and ``/resume``; all ranks wait for it, so every rollout is sampled from the weights
the trainer holds (on-policy). Before and after every ``generate`` each rank checks that its server still reports
that version: a server that was restarted (it serves the base model again) or reloaded by someone else is given
the copy on disk again, and rollouts that straddle such a change are sampled again.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.rollout.base import RolloutBatch
from runtime.serving.client import Endpoint, ServerAnswerError, ServerError, check_server_tokenizer, request
from runtime.serving.servers import EXTENSION

# the worker method of cascadec's extension (`runtime.serving.vllm_ext`), and vLLM's own
RELOAD = "cascadec_reload"
VLLM_RELOAD = "reload_weights"


@dataclass(frozen=True)
class Publisher:
    """How this rank takes part in a weight update: ``save(model)`` writes the model's weights (a collective:
    every rank calls it; returns the directory, the same on every rank), ``reloads`` whether this rank asks
    its server to load them, ``barrier()`` waits for every rank."""

    save: Callable[[Any], Path]
    reloads: bool
    barrier: Callable[[], None]


@dataclass(frozen=True)
class Needs:
    """What the stage needs of the server: processed log-probs (it samples at a temperature other than 1 or
    with top-k/top-p), ``max_len`` tokens of prompt + completion, a refreshed tied head (``tied``)."""

    processed_logprobs: bool
    max_len: int
    tied: bool


def _seed(seed: int, i: int) -> int:
    """Prompt ``i``'s own seed: the result does not depend on how prompts are split into requests."""
    return (seed * 1_000_003 + i) % 2**63


class ServerRolloutEngine:
    """Rollouts from a vLLM server that reloads the policy's weights after every optimizer step.

    Args:
        ep: the server (`runtime.serving.servers.rollout_endpoint`).
        tokenizer: the policy's tokenizer (prompts are tokenized here, token ids go to the server).
        model: the policy; its weights are published before the first rollout.
        publisher: this rank's part in a weight update.
        needs: what the server must offer, checked at construction with its tokenizer.
        max_prompt: prompts longer than this many tokens keep their last ``max_prompt`` tokens.
        owner: names the policy in messages (``the policy of stage `rl```).

    Raises:
        ServerError: the server is unreachable, lacks vLLM's development endpoints (``VLLM_SERVER_DEV_MODE=1``),
            returns raw log-probs where processed ones are needed, holds fewer than ``needs.max_len`` tokens,
            cannot refresh a tied head, or tokenizes differently.
    """

    def __init__(self, ep: Endpoint, tokenizer: Any, model: Any, publisher: Publisher, needs: Needs, *,
                 max_prompt: int | None = None, owner: str = "the policy") -> None:
        self.ep, self.tokenizer, self.model, self.publisher = ep, tokenizer, model, publisher
        self.max_prompt = max_prompt
        self.method = self._check(needs)
        check_server_tokenizer(ep, tokenizer, owner)
        self.stale = True
        self.path: Path | None = None
        self.version: str | None = None
        self.syncs = 0
        self.sync_s = 0.0

    # ------------------------------------------------------------------ the server's configuration

    def _config(self) -> dict[str, Any]:
        try:
            return request(self.ep, "/server_info?config_format=json")["vllm_config"]
        except ServerAnswerError as exc:
            if exc.status != 404:
                raise
            raise ServerError(
                f"{self.ep.label} at {self.ep.url} has no /server_info: vLLM's development endpoints are off, and "
                "the weight reload after each step needs them\nhelp: start the server with VLLM_SERVER_DEV_MODE=1 "
                f"and `--worker-extension-cls {EXTENSION}` (docs/serving.md)") from None

    def _check(self, needs: Needs) -> str:
        """Check the server against ``needs``; returns the worker method that reloads weights."""
        config, label = self._config(), f"{self.ep.label} at {self.ep.url}"
        model = config.get("model_config") or {}
        if needs.processed_logprobs and model.get("logprobs_mode") != "processed_logprobs":
            raise ServerError(
                f"{label} returns `{model.get('logprobs_mode')}` log-probs, and this stage samples at another "
                "temperature than 1 or with top-k/top-p: its importance ratios need the log-probs of the distribution "
                "sampled from\nhelp: start the server with `--logprobs-mode processed_logprobs`")
        if int(model.get("max_model_len") or 0) < needs.max_len:
            raise ServerError(
                f"{label} holds {model.get('max_model_len')} tokens per sequence, and this stage needs {needs.max_len} "
                "(its longest prompt and response, and every eval's)\nhelp: start the server with "
                f"`--max-model-len {needs.max_len}` or more (CASCADEC_VLLM_ARGS for a server `cascadec run` starts)")
        extension = (config.get("parallel_config") or {}).get("worker_extension_cls") == EXTENSION
        cpu = (config.get("device_config") or {}).get("device") == "cpu"
        if not extension and cpu and needs.tied:
            raise ServerError(
                f"{label} runs on CPUs without cascadec's worker extension: the policy ties its output head to its "
                "input embedding, and vLLM's CPU backend would go on sampling from the old head after a reload\n"
                f"help: start it with `--worker-extension-cls {EXTENSION}` and runtime/serving/vllm_ext on "
                "PYTHONPATH (docs/serving.md)")
        return RELOAD if extension else VLLM_RELOAD

    # ------------------------------------------------------------------ weights

    def sync_weights(self, model: Any) -> None:
        """Sample from ``model``'s current weights from the next ``generate`` on (published there: the write and
        reload cost nothing for a step that samples nothing)."""
        self.model, self.stale = model, True

    def served_version(self) -> str:
        """The weight version the server reports (vLLM's ``/weight_info``)."""
        return str(request(self.ep, "/weight_info")["weight_version"])

    def _reload(self, path: Path, version: str) -> None:
        request(self.ep, "/pause?mode=wait", {})
        try:
            request(self.ep, "/collective_rpc", {"method": self.method, "kwargs": {"weights_path": str(path)},
                                                 "timeout": self.ep.timeout_s})
            if not request(self.ep, "/reset_prefix_cache", {}).get("success", False):
                raise ServerError(f"{self.ep.label} at {self.ep.url} could not drop its prefix cache after a reload "
                                  "(KV computed with the old weights)\nhelp: check the server's log")
            request(self.ep, "/update_weight_version", {"new_version": version})
        finally:
            request(self.ep, "/resume", {})

    def _publish(self) -> None:
        start = time.perf_counter()
        path = self.publisher.save(self.model)
        if self.publisher.reloads:
            self._reload(path, f"{self.syncs + 1}-{uuid.uuid4().hex[:12]}")
        self.publisher.barrier()
        self.path, self.version, self.stale = path, self.served_version(), False
        self.syncs += 1
        self.sync_s = time.perf_counter() - start

    def _restore(self) -> None:
        """Give the server the published weights again (it reports another version than this engine's)."""
        assert self.path is not None and self.version is not None
        print(f"warning: {self.ep.label} at {self.ep.url} serves weight version {self.served_version()!r}, not "
              f"{self.version!r} (restarted, or reloaded by another client): reloading {self.path}", file=sys.stderr,
              flush=True)
        self._reload(self.path, self.version)

    def metrics(self) -> dict[str, float]:
        """``weight_sync_s``: seconds of the last publication (write + reload + wait), ``weight_version``: how many
        times the weights were published."""
        return {"weight_sync_s": self.sync_s, "weight_version": float(self.syncs)}

    # ------------------------------------------------------------------ sampling

    def generate(self, prompts: list[str], *, n: int, max_new_tokens: int, temperature: float,
                 top_p: float, top_k: int, seed: int) -> RolloutBatch:
        """Sample ``n`` completions of each prompt from the policy's current weights; rows are grouped per prompt.

        Raises:
            ValueError: ``n`` or ``max_new_tokens`` below 1.
            ServerError: the server failed (after retries), or its weights changed twice during one call.
        """
        if n < 1 or max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got n={n}, max_new_tokens={max_new_tokens}")
        if self.stale:
            self._publish()
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        if self.max_prompt is not None:
            ids = [row[-self.max_prompt:] for row in ids]
        sampling = {"max_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
                    "top_k": top_k if top_k > 0 else -1}
        for _ in range(2):
            if self.served_version() != self.version:
                self._restore()
            rows = self._sample(ids, n, seed, sampling)
            if self.served_version() == self.version:
                return rows
        raise ServerError(f"{self.ep.label} at {self.ep.url} changed its weights during two rollouts in a row: "
                          "another client reloads it\nhelp: give this stage a server of its own")

    def _sample(self, ids: list[list[int]], n: int, seed: int, sampling: dict[str, Any]) -> RolloutBatch:
        copies, per_request = (n, 1) if sampling["temperature"] <= 0 else (1, n)

        def one(i: int) -> list[dict[str, Any]]:
            body = {"model": self.ep.model, "prompt": [ids[i]] * copies, "n": per_request, "seed": _seed(seed, i),
                    "logprobs": 0, "return_token_ids": True, **sampling}
            choices = sorted(request(self.ep, "/v1/completions", body)["choices"], key=lambda c: c["index"])
            if len(choices) != n:
                raise ServerError(f"{self.ep.label} answered {len(choices)} of {n} completions")
            return choices

        with ThreadPoolExecutor(max_workers=max(1, self.ep.concurrency)) as pool:
            answers = list(pool.map(one, range(len(ids))))
        rows: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "completion_logprobs": [],
                                 "truncated": [], "texts": []}
        for prompt, choices in zip(ids, answers):
            for choice in choices:
                tokens, logprobs = self._completion(choice)
                rows["prompt_ids"].append(list(prompt))
                rows["completion_ids"].append(tokens)
                rows["completion_logprobs"].append(logprobs)
                rows["truncated"].append(choice.get("finish_reason") == "length")
                rows["texts"].append(self.tokenizer.decode(tokens, skip_special_tokens=True))
        return RolloutBatch(**rows)

    def _completion(self, choice: dict[str, Any]) -> tuple[list[int], list[float]]:
        tokens = choice.get("token_ids")
        logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
        if tokens is None or logprobs is None or len(logprobs) != len(tokens) or None in logprobs:
            raise ServerError(f"{self.ep.label} at {self.ep.url} answered without the completion's token ids and "
                              "their log-probs\nhelp: serve the model with vLLM (`/v1/completions` with "
                              "`return_token_ids` and `logprobs`)")
        return [int(t) for t in tokens], [float(x) for x in logprobs]
