"""A bf16 copy of the policy's weights for the training forward and backward on a CPU.

Under accelerate's bf16 mixed precision every forward runs under ``torch.autocast``, which converts each fp32
weight to bf16 again at every call and converts its bf16 gradient back to fp32 in the backward, and keeps the
residual stream, the norms and the element-wise products between layers in fp32. On a CPU, where memory
bandwidth bounds those, that was a third of a GRPO update of SmolLM2-135M (2 cores, 16 rows x 101 tokens:
``aten::copy_``/``_to_copy`` 15% and fp32 ``aten::mul`` 13% of 3.9 s; issue 16).

:class:`Bf16Weights` keeps a bf16 copy of the model instead (2 bytes a parameter) and runs the forward and
backward through it without autocast, as FSDP's ``MixedPrecision(param_dtype=bfloat16)`` and Megatron's bf16
training do: activations are bf16 end to end, the loss statistics stay fp32 (``runtime.ops.token_logprobs``).
The fp32 master weights, their gradients and the optimizer state are unchanged:

* each bf16 gradient is added into its fp32 master's ``.grad`` as soon as it is accumulated (a
  ``post_accumulate_grad_hook``), so micro-batches accumulate in fp32 and clipping, the optimizer and
  checkpoints see the fp32 model exactly as before;
* the copy is refreshed from the masters before the first forward after an optimizer step (a step hook:
  the fused AdamW kernels update in place without bumping a tensor's version counter) or after any other
  in-place change of a master (a resumed checkpoint's ``load_state_dict``, read from the version counters).

Used only for a single CPU process (``runtime.entry.build_context``): DDP, FSDP2 and DeepSpeed synchronise the
gradients of the parameters they wrap, and on CUDA autocast's casts are a small part of a step.
"""

from __future__ import annotations

from typing import Any

import torch

from runtime.replica import paired_parameters, replica


class Bf16Weights:
    """A bf16 copy of ``master`` (an fp32 transformers model) whose gradients land on ``master``'s parameters.

    Call :meth:`model` for the module to run a training (or no-grad scoring) forward through. ``optimizer``
    (the one stepping ``master``'s parameters) marks the copy stale after each of its steps.
    """

    def __init__(self, master: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.master = master
        self.copy = replica(master, next(master.parameters()).device, torch.bfloat16)
        # transformers marks the modules it checkpoints (`gradient_checkpointing_enable` sets the flag on them)
        if any(getattr(m, "gradient_checkpointing", False) for m in master.modules()):
            self.copy.gradient_checkpointing_enable()
        pairs = paired_parameters(self.copy, master)
        self._copies, self._masters = [c for c, _ in pairs], [m for _, m in pairs]
        for c, m in pairs:
            if m.requires_grad:
                c.requires_grad_(True)
                c.register_post_accumulate_grad_hook(_into_master(m))
        self._seen: list[int] = []
        self._stepped = True
        if optimizer is not None:
            # accelerate wraps the optimizer; the hook goes on the torch optimizer that steps
            getattr(optimizer, "optimizer", optimizer).register_step_post_hook(self._mark_stepped)

    def _mark_stepped(self, *_: Any) -> None:
        self._stepped = True

    def model(self) -> torch.nn.Module:
        """The bf16 module, current with the masters, in the masters' train/eval mode."""
        versions = [m._version for m in self._masters]
        if self._stepped or versions != self._seen:
            with torch.no_grad():
                torch._foreach_copy_(self._copies, self._masters)
            self._seen, self._stepped = versions, False
        return self.copy.train(self.master.training)


def _into_master(master: torch.Tensor) -> Any:
    """A hook that adds a copy parameter's bf16 gradient into ``master.grad`` (fp32) and frees it."""
    def hook(p: torch.Tensor) -> None:
        if master.grad is None:
            master.grad = p.grad.to(master.dtype)
        else:
            master.grad.add_(p.grad)
        p.grad = None

    return hook
