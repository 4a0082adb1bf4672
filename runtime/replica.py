"""A whole copy of a transformers model in another dtype, filled from the source's parameters.

The rollout engines decode from a bf16 copy of fp32 master weights (``runtime.rollout.fast``,
``runtime.rollout.hf``): both build it with :func:`replica`, pair its parameters with the source's by name
with :func:`paired_parameters`, and copy the source in with one ``_foreach_copy_`` (FSDP2 shards are gathered
first with :func:`whole`).
"""

from __future__ import annotations

import torch
from torch import nn


def is_dtensor(tensor: torch.Tensor) -> bool:
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` whole on this rank: a ``DTensor`` is all-gathered (a collective every rank must join)."""
    return tensor.full_tensor() if is_dtensor(tensor) else tensor


def _plain_class(model: nn.Module) -> type:
    """``model``'s own class: FSDP2's ``fully_shard`` swaps in a subclass ``FSDP<Name>`` whose instances
    gather their parameters in ``forward``; the copy must be the plain class."""
    if torch.distributed.is_available():
        from torch.distributed.fsdp import FSDPModule

        return next(c for c in type(model).__mro__ if issubclass(c, nn.Module) and not issubclass(c, FSDPModule))
    return type(model)


@torch.no_grad()
def replica(source: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """An empty whole copy of the transformers model ``source``: parameters ``dtype`` on ``device``
    (uninitialised: the caller fills them through :func:`paired_parameters`), no gradients, eval mode.

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
            buffer.copy_(whole(theirs[name]))
    model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)
    return model.eval()


def _contiguous_input(_head: nn.Module, args: tuple) -> tuple:
    """The head's input, contiguous: ``matmul`` folds a strided 3-D input (a prefill's ``hidden[:, -1:]``)
    into one GEMM only when an operand requires grad, else it expands the ``[V, d]`` head to ``[rows, d, V]``
    for a batched GEMM (on 2 CPU cores, 5.5 s of a 64-prompt prefill of 6.7 s; issue 16)."""
    return (args[0].contiguous(), *args[1:])


def paired_parameters(replica: nn.Module, source: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(replica's parameter, source's parameter)`` by name, in the source's order (the same on every rank,
    which the per-parameter all-gathers of an FSDP2 source need).

    Raises:
        RuntimeError: the two models do not have the same parameter names (e.g. the source's head and
            embedding are no longer tied while its config says they are).
    """
    mine, theirs = dict(replica.named_parameters()), dict(source.named_parameters())
    if mine.keys() != theirs.keys():
        raise RuntimeError(
            "the rollout engine's copy of the policy does not match the policy's parameters: "
            f"only in the copy {sorted(mine.keys() - theirs.keys())}, only in the policy "
            f"{sorted(theirs.keys() - mine.keys())}; help: set CASCADEC_FAST_ROLLOUT=0 to use transformers generate"
        )
    return [(mine[name], param) for name, param in theirs.items()]
