"""One training step per stage kind (docs/ARCHITECTURE.md, "Stage loop and trainers").

``TRAINERS`` maps a stage kind to its Trainer class, as named by the kind's entry in
`cascadec.contract.kinds.STAGE_KINDS`. It is built on first access, so importing one trainer module (or this
package) does not import the others and their dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import torch

from accelerate.utils import DistributedType

from cascadec.contract.kinds import STAGE_KINDS, load
from runtime.data import Sample

if TYPE_CHECKING:
    from runtime.context import StageContext

# Distributed set-ups in which every rank holds every parameter's whole gradient (see clip_gradients).
WHOLE_GRADIENTS = frozenset({DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU})


class Trainer(Protocol):
    """One stage kind's optimizer step; the loop owns batching, metrics files, checkpoints and evals.

    A trainer may set ``nothing_to_learn`` (a str: why) when its stage cannot learn anything; the loop then
    takes no step, keeps the start checkpoint as the stage's own and evaluates it. Optional, so that plugin
    trainers written before it need no change.
    """

    def __init__(self, ctx: StageContext) -> None: ...

    def step(self, step: int, batch: list[Sample]) -> dict[str, float]:
        """Exactly one optimizer step (and one scheduler step) on ``batch``; returns scalar metrics."""
        ...

    def state_dict(self) -> dict:
        """Extra state to checkpoint (may be ``{}``)."""
        ...

    def load_state_dict(self, state: dict) -> None: ...


def backward_passes(ctx: StageContext, local: int) -> int:
    """The number of micro-batch backward passes every rank runs this step: the most any rank needs.

    DDP all-reduces gradients in each synchronised backward, so ranks must run the same count; a rank with
    fewer micro-batches pads with zero-weight ones.
    """
    acc = ctx.accelerator
    if acc.num_processes == 1:
        return local
    return int(acc.gather(torch.tensor([local], device=ctx.device)).max())


def optimizer_step(ctx: StageContext, grad_clip: float, *, advance_schedule: bool = True) -> float:
    """Clip to ``grad_clip`` (``inf``: no clipping), step the optimizer and (unless ``advance_schedule`` is
    false: an earlier mini-batch of a step with several updates) the LR schedule once, zero the
    gradients. Parameters without a gradient (a step whose rollouts were all filtered out) are left
    untouched by AdamW, and the schedule still advances, so step ``s`` always trains at ``lr_at(s)``.

    Returns the gradient norm before clipping (0 when there is no gradient).
    """
    grad_norm = clip_gradients(ctx, grad_clip)
    ctx.optimizer.step()
    if advance_schedule:
        ctx.scheduler.step()
    ctx.optimizer.zero_grad(set_to_none=True)
    return grad_norm


def clip_gradients(ctx: StageContext, max_norm: float) -> float:
    """Clip the policy's gradients to a total 2-norm of ``max_norm`` and return the norm before clipping.

    Where every rank holds whole gradients (one process, or DDP after its all-reduce) this is
    ``torch.nn.utils.clip_grad_norm_`` without its multiplication by a clipping factor of exactly 1 (a
    norm within ``max_norm``): that pass over every gradient, which PyTorch keeps to avoid a device sync,
    changes no value, and the norm is read on the host here anyway. Sharded set-ups (FSDP, DeepSpeed) and a
    gradient scaler go through ``accelerate``'s ``clip_grad_norm_``.
    """
    acc = ctx.accelerator
    if acc.distributed_type not in WHOLE_GRADIENTS or getattr(acc, "scaler", None) is not None:
        return float(acc.clip_grad_norm_(ctx.policy.parameters(), max_norm))
    params = [p for p in ctx.policy.parameters() if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0)
    if bool(max_norm / (norm + 1e-6) < 1.0):  # torch's clip_grads_with_norm_ factor, before its clamp at 1
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return float(norm)


def __getattr__(name: str) -> Any:
    if name == "TRAINERS":
        trainers = {name: load(kind.trainer) for name, kind in STAGE_KINDS.items()}
        globals()["TRAINERS"] = trainers
        return trainers
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
