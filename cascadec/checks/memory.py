"""A lower bound on GPU memory per rank: model states (weights, gradients, AdamW states) plus frozen models,
against `resources { memory_per_gpu = ... }` (CAS409, a warning).

Model states follow the ZeRO paper (Rajbhandari et al. 2020, §3.1 and Figure 1): mixed-precision AdamW keeps
2Ψ bytes of bf16 weights, 2Ψ of bf16 gradients and 12Ψ of fp32 master weights, momentum and variance for Ψ
parameters; fp32 training keeps 4Ψ + 4Ψ + 8Ψ. ZeRO-1 shards the optimizer states over the N data-parallel ranks,
ZeRO-2 also the gradients, ZeRO-3 and FSDP2 everything; DDP shards nothing. Frozen models (the GRPO reference
when `kl > 0`, each distinct teacher of a distill stage) are loaded whole on every rank in the working
precision (`runtime.context.StageContext.load_frozen`). Activations, the KV cache and the rollout engine come
on top, so a stage above the bound certainly does not fit, and one below it may still not.

The parameter count Ψ is known for packaged models, and read from a hub id or directory name that states it
(`Qwen/Qwen3-8B-Base` → 8e9, `...-30B-A3B` → 30e9: a mixture of experts holds all its experts). Otherwise,
or without `memory_per_gpu`, nothing is checked.
"""

from __future__ import annotations

import re
from typing import Iterator

from cascadec import ast
from cascadec.checks.context import CheckContext
from cascadec.codes import make
from cascadec.diagnostics import Diagnostic
from cascadec.model import PACKAGED_MODELS
from cascadec.contract.plan import ModelRef, Stage


# the first `<number>B` or `<number>M` that stands alone in the last path component: `Qwen3-8B`, `72B-Instruct`
_SIZE = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)([BM])(?![A-Za-z0-9])")
_SCALE = {"B": 1e9, "M": 1e6}


def parameter_count(kind: str, name: str) -> int | None:
    """Ψ of the base model, or None when neither its kind nor its name tells it."""
    if kind == "packaged":
        return PACKAGED_MODELS.get(name)
    if kind not in ("hub", "path"):
        return None
    found = _SIZE.search(name.rstrip("/").rsplit("/", 1)[-1])
    return int(float(found.group(1)) * _SCALE[found.group(2)]) if found else None


def model_state_bytes(params: int, st: Stage, frozen: int) -> tuple[float, float]:
    """(trained model's states, frozen models) in bytes per rank for stage ``st`` (see the module docstring)."""
    r = st.resources
    n = st.data_parallel_size
    width = 4 if r.precision == "fp32" else 2
    weights, grads = width * params, width * params
    optimizer = (8 if width == 4 else 12) * params
    shard = {"ddp": (1, 1, 1), "zero1": (1, 1, n), "zero2": (1, n, n), "zero3": (n, n, n), "fsdp2": (n, n, n)}
    w, g, o = shard[r.strategy]
    return weights / w + grads / g + optimizer / o, frozen * width * params


def frozen_models(st: Stage) -> int:
    """How many frozen models the stage holds at least (its kind's `frozen_models`: a GRPO reference,
    distinct distillation teachers), leaving out teachers served from `teacher_servers` (every candidate of a
    `best(...)` route served: the route is served)."""
    served = st.resources.teacher_servers
    local = {route: t for route, t in st.teachers.items()
             if not all(name in served for name in ([t.stage] if t.kind == "stage" else t.candidates))}
    return st.params.frozen_models(local)


def memory_lower_bound(base: ModelRef, st: Stage) -> float | None:
    """Bytes per GPU that stage ``st`` needs at least, or None when the base model's size is unknown."""
    params = parameter_count(base.kind, base.name)
    return None if params is None else sum(model_state_bytes(params, st, frozen_models(st)))


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def check_memory(module: ast.Module, ctx: CheckContext) -> Iterator[Diagnostic]:
    assert ctx.spec is not None
    params = parameter_count(ctx.spec.base.kind, ctx.spec.base.name)
    if params is None:
        return
    for i, (st, node) in enumerate(zip(ctx.spec.stages, ctx.view.stages)):
        limit = st.resources.memory_per_gpu_bytes
        if limit is None:
            continue
        trained, frozen = model_state_bytes(params, st, frozen_models(st))
        if trained + frozen <= limit:
            continue
        n = st.data_parallel_size
        notes = (f"{params / 1e9:.3g}B parameters; `strategy = {st.resources.strategy}` over {n} rank(s): "
                 f"{_gib(trained)} of weights, gradients and AdamW states"
                 + (f" + {_gib(frozen)} of frozen reference/teacher models" if frozen else "")
                 + "; activations, KV cache and the rollout engine come on top",)
        yield make("CAS409", f"stage `{st.name}` needs at least {_gib(trained + frozen)} per GPU, more than "
                   f"`memory_per_gpu` = {_gib(limit)}",
                   node.name.span, label="does not fit",
                   secondary=((ctx.span_of(("stages", i, "resources", "memory_per_gpu_bytes"), node.name.span),
                               "GPU memory set here"),), notes=notes,
                   help="shard the model states: `strategy = zero3` or `fsdp2` divides them by the number of "
                   "GPUs; or add GPUs (`gpus`, `nodes`)")
