"""The paper's losses on hand-made cases (eq. 2-5)."""
from __future__ import annotations

import math

import torch

from training.models import losses as L


def test_epe_is_the_mean_euclidean_norm_per_pixel():
    pred = torch.zeros(2, 2, 4, 4)
    target = torch.zeros(2, 2, 4, 4)
    target[:, 0] = 3.0
    target[:, 1] = 4.0   # a 3-4-5 vector everywhere
    target[1] *= 2.0     # second sample: 10 everywhere
    assert math.isclose(L.epe(pred, target).item(), 7.5, rel_tol=1e-6)
    assert math.isclose(L.epe(pred, target, mask=torch.tensor([False, True])).item(), 10.0, rel_tol=1e-6)
    assert L.epe(pred, target, mask=torch.tensor([False, False])).item() == 0.0


def test_charbonnier_is_eps_at_zero_and_abs_far_away():
    x = torch.zeros(1, 2, 3, 3)
    assert math.isclose(L.charbonnier(x, x, eps=0.01).item(), 0.01, rel_tol=1e-6)
    y = torch.full_like(x, 5.0)
    assert math.isclose(L.charbonnier(x, y, eps=1e-3).item(), math.sqrt(25 + 1e-6), rel_tol=1e-6)


def test_gan_losses_are_sigmoid_and_categorical_cross_entropy():
    zero = torch.zeros(4, 1, 3, 3)
    assert math.isclose(L.dp_loss(zero, zero).item(), math.log(2), rel_tol=1e-6)
    assert L.dp_loss(torch.full_like(zero, 20.0), torch.full_like(zero, -20.0)).item() < 1e-6
    uniform = torch.zeros(4, 7)
    labels = torch.tensor([0, 1, 2, 3])
    assert math.isclose(L.de_loss(uniform, labels).item(), math.log(7), rel_tol=1e-6)
    # G_F's GAN loss: half the D_P 'real' BCE plus half D_E's cross-entropy on the true labels.
    g = L.gan_loss_gf(zero, uniform, labels).item()
    assert math.isclose(g, 0.5 * (math.log(2) + math.log(7)), rel_tol=1e-6)


def test_cross_entropy_ignores_unlabeled_rows():
    logits = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    assert L.cross_entropy(logits, torch.tensor([0, -1])).item() < 1e-3
    assert L.cross_entropy(logits, torch.tensor([-1, -1])).item() == 0.0
    assert L.cross_entropy(logits, torch.tensor([1, -1])).item() > 9.0


def test_weighted_sums_follow_eq_2_and_5():
    one = torch.tensor(1.0)
    assert L.total_gw(one, 2 * one, 3 * one, (2, 7, 1)).item() == 2 + 14 + 3
    lam = (1, 7, 3, 1)
    assert L.total_gf(one, one, one, 10 * one, lam, connected=False).item() == 11
    assert L.total_gf(one, one, one, 10 * one, lam, connected=True).item() == 21


def test_perceptual_compares_features_of_both_images():
    feats = lambda x: [x, x.mean(dim=1, keepdim=True)]  # noqa: E731 - a two-layer toy extractor
    a, b = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert L.perceptual(feats, a, a).item() == 0.0
    assert math.isclose(L.perceptual(feats, a, b).item(), 2.0, rel_tol=1e-6)
    assert math.isclose(L.l1_image(a, b).item(), 1.0)


def test_grey_gradient_passes_the_images_and_only_the_grey_part_of_their_gradient():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 5, requires_grad=True)
    y = L.grey_gradient(x)
    assert torch.equal(y, x)                                   # the judges read the very same faces
    w = torch.randn(2, 3, 5, 5)
    (y * w).sum().backward()
    # each pixel's three channel gradients replaced by their mean: a step along it changes brightness, not colour
    assert torch.allclose(x.grad, w.mean(1, keepdim=True).expand_as(w))
    x.grad = None
    (x * w).sum().backward()
    assert not torch.allclose(x.grad, x.grad.mean(1, keepdim=True))   # without it the gradient has colour


def test_neutral_rows_weigh_more_and_pull_an_undecided_output_towards_no_motion():
    # Seven rows that one input cannot tell apart: four classes move a pixel right, two left, neutral not at all.
    label = torch.tensor([1, 2, 3, 4, 5, 6, 0])
    step = torch.tensor([1, 1, 1, 1, 1, 1, 9])
    u = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0, -1.0, 0.0])
    target = torch.zeros(7, 2, 1, 1)
    target[:, 0, 0, 0] = u
    assert L.flow_row_weights(step, label, None, 1.0) is None
    table = torch.from_numpy(L.step_weight_table(step.numpy(), "step"))
    w = L.flow_row_weights(step, label, table, 3.0)
    assert torch.allclose(w, table[step] * torch.tensor([1.0] * 6 + [3.0]))

    def best(weights):   # the constant output with the least L_epe over the rows, on a grid
        grid = torch.linspace(-1.5, 1.5, 301)
        losses = [L.epe(torch.cat([torch.full_like(target[:, :1], float(g)), torch.zeros_like(target[:, 1:])], 1),
                        target, weights) for g in grid]
        return float(grid[int(torch.stack(losses).argmin())])

    assert abs(best(None) - 1.0) < 1e-6                                       # plain mean: the median moves right
    assert abs(best(L.flow_row_weights(step, label, None, 3.0))) < 1e-6     # neutral x3: no motion
