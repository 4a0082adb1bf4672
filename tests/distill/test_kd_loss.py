"""Offline-distillation losses (runtime.losses.kd) against hand-computed values and finite differences."""

import math

import pytest
import torch

from runtime.losses.kd import mixed_loss, topk_forward_kl


def test_topk_kl_renormalises_both_over_the_teacher_ids():
    student = torch.tensor([[0.0, math.log(3.0), 5.0, 0.0]])  # over ids [1, 0]: probs 3/4, 1/4
    ids = torch.tensor([[1, 0]])
    teacher = torch.log(torch.tensor([[0.25, 0.25]]))  # renormalised: 1/2, 1/2
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert topk_forward_kl(student, ids, teacher).item() == pytest.approx(expected)
    same = torch.log_softmax(student.gather(-1, ids), -1)
    assert topk_forward_kl(student, ids, same).item() == pytest.approx(0.0, abs=1e-7)


def test_temperature_divides_the_student_logits():
    student = torch.tensor([[2.0, 0.0]])
    ids = torch.tensor([[0, 1]])
    teacher = torch.log_softmax(torch.tensor([[1.0, 0.0]]), -1)  # = student / 2
    assert topk_forward_kl(student, ids, teacher, temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_mixed_loss_hand_computed_and_weight_range():
    ce = torch.tensor([[1.0, 2.0], [3.0, 9.0]])
    kd = torch.tensor([[0.5, 0.5], [1.0, 9.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    # tokens: (0.75*1 + 0.25*0.5) + (0.75*2 + 0.25*0.5) + (0.75*3 + 0.25*1) = 5.0 over 3 tokens
    assert mixed_loss(ce, kd, mask, 0.25, 3).item() == pytest.approx(5.0 / 3)
    assert mixed_loss(ce, kd, mask, 0.0, 3).item() == pytest.approx(6.0 / 3)
    with pytest.raises(ValueError, match=r"kd_weight must lie in \[0, 1\]"):
        mixed_loss(ce, kd, mask, 1.5, 3)


def test_topk_kl_gradient_matches_finite_difference():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    ids = torch.stack([torch.randperm(7, generator=gen)[:4] for _ in range(6)]).view(2, 3, 4)
    teacher = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)

    def value(x):
        s = torch.log_softmax(x.gather(-1, ids) / 1.5, -1)
        t = torch.log_softmax(teacher, -1)
        return (t.exp() * (t - s)).sum()

    topk_forward_kl(logits, ids, teacher, 1.5).sum().backward()
    d = torch.randn(logits.shape, generator=gen, dtype=torch.float64)
    eps = 1e-6
    with torch.no_grad():
        numeric = (value(logits + eps * d) - value(logits - eps * d)) / (2 * eps)
    assert float((logits.grad * d).sum()) == pytest.approx(float(numeric), rel=1e-6)
