"""Teacher route weights on the distillation losses: hand-computed values, and no gradient from the rows
of a route of weight 0."""

from __future__ import annotations

import pytest
import torch

from runtime.losses.distill import logit_distill_loss, mopd_loss, sequence_token_mean

MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)  # the last row is empty


def test_row_weights_multiply_each_rows_token_mean_over_the_count_of_sequences():
    values = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0], [9.0, 9.0, 9.0]])
    # rows: means 1.5 and 3 (the empty row does not count): (2 * 1.5 + 0.5 * 3) / 2
    got = sequence_token_mean(values, MASK, row_weights=torch.tensor([2.0, 0.5, 7.0]))
    assert got.item() == pytest.approx(2.25)
    assert sequence_token_mean(values, MASK, num_sequences=4, row_weights=torch.tensor([2.0, 0.5, 7.0])).item() \
        == pytest.approx(4.5 / 4)


def test_weighted_mopd_loss_equals_the_hand_computed_value():
    lp = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    teacher = torch.tensor([[-0.5, -1.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    # ratio 1 (sampled by the same policy): a = teacher - lp; row means of a * lp are -1.25 and 2, so
    # L = -(2 * -1.25 + 0.5 * 2) / 2
    out = mopd_loss(lp, teacher, lp.clone(), MASK, row_weights=torch.tensor([2.0, 0.5, 1.0]))
    assert out.loss.item() == pytest.approx(0.75)
    assert mopd_loss(lp, teacher, lp.clone(), MASK).loss.item() == pytest.approx(-(-1.25 + 2.0) / 2)


def test_a_route_of_weight_zero_gives_no_gradient_from_its_rows():
    torch.manual_seed(0)
    weights = torch.tensor([1.0, 0.0, 1.0])
    lp = torch.randn(3, 3, requires_grad=True)
    mopd_loss(lp, torch.randn(3, 3), lp.detach(), MASK, row_weights=weights).loss.backward()
    assert lp.grad[1].abs().sum() == 0 and lp.grad[0].abs().sum() > 0
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        logits = torch.randn(3, 3, 5, requires_grad=True)
        loss, _ = logit_distill_loss(logits, torch.randn(3, 3, 5), MASK, kind=kind, row_weights=weights)
        loss.backward()
        assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0
