"""The learning-rate schedule: warm-up, then constant / linear / cosine decay (runtime.context.lr_at)."""

from __future__ import annotations

import math

import pytest
import torch

from cascadec.contract.plan import Optim, Schedule
from runtime.context import build_optimizer, build_scheduler, lr_at


def test_warmup_is_linear_from_start_to_peak() -> None:
    s = Schedule(peak=1e-3, warmup=4, warmup_start=1e-4)
    assert [lr_at(s, i, 10) for i in range(5)] == pytest.approx([1e-4, 3.25e-4, 5.5e-4, 7.75e-4, 1e-3])
    assert lr_at(s, 9, 10) == pytest.approx(1e-3)


def test_cosine_reaches_end_at_last_step() -> None:
    # Nemotron-Cascade 2 SFT shape (Table 7): warm-up to 5e-5, cosine to 5e-6.
    s = Schedule(peak=5e-5, end=5e-6, kind="cosine", warmup=2)
    total = 12
    assert lr_at(s, 2, total) == pytest.approx(5e-5)
    assert lr_at(s, 11, total) == pytest.approx(5e-6)
    mid = 2 + (total - 1 - 2) / 2  # p = 0.5 -> halfway between peak and end
    assert lr_at(s, int(mid), total) < 5e-5
    p = (6 - 2) / (total - 1 - 2)
    assert lr_at(s, 6, total) == pytest.approx(5e-6 + (5e-5 - 5e-6) * 0.5 * (1 + math.cos(math.pi * p)))


def test_linear_decay_and_default_end_zero() -> None:
    s = Schedule(peak=1.0, kind="linear")
    assert [lr_at(s, i, 5) for i in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    assert lr_at(s, 7, 5) == pytest.approx(0.0)  # past the end: clipped


def test_single_step_stage_has_no_division_by_zero() -> None:
    s = Schedule(peak=2e-5, end=0.0, kind="cosine")
    assert lr_at(s, 0, 1) == pytest.approx(0.0)


def test_lambda_scheduler_follows_formula_and_optimizer_uses_plan_betas() -> None:
    s = Schedule(peak=1e-2, end=1e-3, kind="cosine", warmup=3, warmup_start=0.0)
    w = torch.nn.Parameter(torch.zeros(2))
    opt = build_optimizer([w], Optim(lr=s, betas=(0.9, 0.95), weight_decay=0.1, eps=1e-6))
    g = opt.param_groups[0]
    assert g["betas"] == (0.9, 0.95) and g["weight_decay"] == 0.1 and g["eps"] == 1e-6
    sched = build_scheduler(opt, s, total_steps=10)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([lr_at(s, i, 10) for i in range(10)])
    restored = build_scheduler(opt, s, total_steps=10)
    restored.load_state_dict(sched.state_dict())
    assert restored.last_epoch == 10
