"""The keys and call names the language accepts outside the kind registry (`cascadec.contract.kinds`)."""

from __future__ import annotations

from cascadec.memory_estimate import GPU_MEMORY_MIB
from cascadec.contract.kinds import COMMON_KEYS, ENGINE_KEYWORDS, STAGE_KINDS, Key

BOOLS = {"on": True, "off": False, "true": True, "false": False}
# models shipped inside PyPI packages (`runtime.models.PACKAGED`; a test keeps the two equal) and their
# parameter counts, summed over the tensors of the shipped GGUF file (for the memory estimate, CAS409)
PACKAGED_MODELS = {"smollm2-135m-instruct": 134_515_008}

RESOURCE_KEYS: dict[str, Key] = {
    "nodes": Key(("resources", "nnodes"), "int"),
    "gpus": Key(("resources", "nproc_per_node"), "int"),
    "device": Key(("resources", "device"), "enum", ("auto", "cpu", "cuda")),
    "precision": Key(("resources", "precision"), "enum", ("auto", "fp32", "bf16")),
    "strategy": Key(("resources", "strategy"), "enum", ("ddp", "zero1", "zero2", "zero3", "fsdp2")),
    "gradient_checkpointing": Key(("resources", "gradient_checkpointing"), "bool"),
    "engine": Key(("resources", "engine"), "enum", ENGINE_KEYWORDS),
    "memory_per_gpu": Key(("resources", "memory_per_gpu_bytes"), "memory"),
    "gpu": Key(("resources", "gpu"), "enum", tuple(GPU_MEMORY_MIB)),
    "micro_batch": Key(("params", "micro_batch"), "int"),
    "node_gpus": Key(("resources", "node_gpus"), "int"),
    "tensor_parallel": Key(("resources", "tensor_parallel"), "int"),
    "rollout": Key(("resources", "rollout"), "server"),
    "teacher_servers": Key(("resources", "teacher_servers"), "servers"),
}

# a key that names a kind of thing → (the key that counts them, what it names): `gpu = 1` means `gpus = 1`
COUNTED_BY = {"gpu": ("gpus", "the GPU type")}

CASCADE_KEYS = ("seed", "base", "chat", "tracking", "checkpoints")
DOMAIN_KEYS = ("train", "reward", "overlong", "system", "chat", "decontaminate")
EVAL_KEYS: dict[str, Key] = {
    "metric": Key(("metric",), "metric"),
    "max_tokens": Key(("max_tokens",), "int"),
    "temperature": Key(("temperature",), "float"),
    "top_p": Key(("top_p",), "float"),
}


def stage_keys(kind: str) -> dict[str, Key]:
    """Keys valid in a stage (or `defaults`) of ``kind``; only the common ones for an unregistered kind."""
    entry = STAGE_KINDS.get(kind)
    return entry.all_keys() if entry else dict(COMMON_KEYS)
