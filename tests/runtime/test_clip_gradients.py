"""runtime.stages.clip_gradients: torch's clip_grad_norm_ without its multiplication by exactly 1."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from runtime.stages import clip_gradients


def policy_with_grads(scale: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4, bias=False))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * scale
    model[0].bias.grad = None  # a parameter without a gradient is left out, as torch does
    return model


def ctx_of(model: torch.nn.Module, kind=DistributedType.NO) -> SimpleNamespace:
    calls = []
    acc = SimpleNamespace(distributed_type=kind, scaler=None,
                          clip_grad_norm_=lambda params, max_norm: calls.append(max_norm) or torch.tensor(7.0))
    return SimpleNamespace(accelerator=acc, policy=model, calls=calls)


@pytest.mark.parametrize("scale,max_norm", [(10.0, 1.0), (0.01, 1.0), (1.0, math.inf)])
def test_gradients_and_norm_equal_torch_bit_for_bit(scale, max_norm):
    mine, ref = policy_with_grads(scale), policy_with_grads(scale)
    norm = clip_gradients(ctx_of(mine), max_norm)
    want = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
    assert norm == float(want)
    for a, b in zip(mine.parameters(), ref.parameters()):
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad)
    clipped = norm > max_norm
    assert clipped == (scale == 10.0)


def test_sharded_gradients_go_through_accelerate():
    model = policy_with_grads(10.0)
    before = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    ctx = ctx_of(model, DistributedType.FSDP)
    assert clip_gradients(ctx, 1.0) == 7.0 and ctx.calls == [1.0]
    assert all(torch.equal(a, p.grad) for a, p in zip(before, [p for p in model.parameters() if p.grad is not None]))


def test_no_gradient_is_a_norm_of_zero():
    model = torch.nn.Linear(2, 2)
    assert clip_gradients(ctx_of(model), 1.0) == 0.0
