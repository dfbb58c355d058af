"""The paper's losses (section III-D): L_epe, L_char, the two GAN losses, L_GW, and their weighted sums.

Flows are (N,2,H,W) tensors in the store's normalized representation, images (N,3,H,W) in [-1,1].
`mask` arguments are (N,) bool/float weights selecting the rows that count (empty mask -> 0).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.schema import CLASS_NAMES


def _masked_mean(per_row: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (N,) values over the rows where mask is set; 0 (with gradient) when none is."""
    if mask is None:
        return per_row.mean()
    w = mask.to(per_row.dtype)
    return (per_row * w).sum() / w.sum().clamp_min(1.0)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Categorical cross-entropy over labeled rows (label -1 = unlabeled sequence, ignored); 0 when none."""
    labeled = labels >= 0
    m = labeled if mask is None else (labeled & mask.bool())
    per_row = F.cross_entropy(logits.float(), labels.clamp_min(0), reduction="none")
    return _masked_mean(per_row, m)


def epe(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_epe, eq. (3): mean over pixels of the Euclidean norm of the (2,) per-pixel difference."""
    per_row = torch.linalg.vector_norm(target - pred, dim=1).flatten(1).mean(1)
    return _masked_mean(per_row, mask)


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_char, eq. (4): mean of sqrt(|target - pred|^2 + eps^2) over every element."""
    per_row = torch.sqrt((target - pred) ** 2 + eps * eps).flatten(1).mean(1)
    return _masked_mean(per_row, mask)


def bce_logits(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Sigmoid cross-entropy of patch logits against all-real (1) or all-fake (0) targets."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def dp_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """D_P's loss: sigmoid cross-entropy, real patches -> 1, generated -> 0 (averaged over both)."""
    return 0.5 * (bce_logits(logits_real, True) + bce_logits(logits_fake, False))


def de_loss(logits_real: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """D_E's loss: categorical cross-entropy of its expression logits on the frontal ground-truth flows."""
    return cross_entropy(logits_real, labels)


def gan_loss_gf(dp_logits_fake: torch.Tensor, de_logits_fake: torch.Tensor, labels: torch.Tensor,
                weights: Sequence[float] = (1.0, 1.0)) -> torch.Tensor:
    """L_GAN = 1/2 (w_P L_GAN(G_F, D_P) + w_E L_GAN(G_F, D_E)): fool D_P into 'real', make D_E read the true label.

    The paper's weights are (1, 1); Table IV's "w/o L_DE" ablation sets w_E = 0.
    """
    return 0.5 * (weights[0] * bce_logits(dp_logits_fake, True) + weights[1] * cross_entropy(de_logits_fake, labels))


def l1_image(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_1 (MAE) between images, per row then over the masked rows."""
    return _masked_mean((pred - target).abs().flatten(1).mean(1), mask)


def grey_gradient(images01: torch.Tensor) -> torch.Tensor:
    """`images01` (N,3,H,W) unchanged, but the gradient that flows back through it keeps only its grey part: each
    pixel's three channel gradients are replaced by their mean, so a loss read through it asks for brighter or
    darker pixels, never for another colour (`judge_grad: grey`, for L_perc and L_eFER). What the optimizer then
    does with G_W's weights can still make colour: on validation it did (docs/EVALUATION.md, session 13)."""
    grey = images01.mean(1, keepdim=True)
    return images01.detach() + (grey - grey.detach()).expand_as(images01)


def perceptual(features: Callable[[torch.Tensor], Sequence[torch.Tensor]], pred01: torch.Tensor,
               target01: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_perc: sum over layers of the mean absolute difference of frozen features; images in [0,1]."""
    with torch.no_grad():
        f_t = [f.detach() for f in features(target01)]
    f_p = features(pred01)
    per_row = sum((a.float() - b.float()).abs().flatten(1).mean(1) for a, b in zip(f_p, f_t))
    return _masked_mean(per_row, mask)


def efer_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_eFER: categorical cross-entropy of e_FER's logits on the generated faces against the true labels."""
    return cross_entropy(logits, labels, mask)


def total_gw(l1: torch.Tensor, perc: torch.Tensor, fer: torch.Tensor, alpha: Sequence[float]) -> torch.Tensor:
    """L_GW = a1 L_1 + a2 L_perc + a3 L_eFER, eq. (2)."""
    return alpha[0] * l1 + alpha[1] * perc + alpha[2] * fer


def total_gf(gan: torch.Tensor, l_epe: torch.Tensor, l_char: torch.Tensor, l_gw: torch.Tensor | None,
             lam: Sequence[float], connected: bool) -> torch.Tensor:
    """L_GF = l1 L_GAN + l2 L_epe + l3 L_char + 1[epoch >= e_c] l4 L_GW, eq. (5)."""
    total = lam[0] * gan + lam[1] * l_epe + lam[2] * l_char
    if connected and l_gw is not None:
        total = total + lam[3] * l_gw
    return total


def step_weight_table(train_steps: np.ndarray, weighting: str) -> np.ndarray | None:
    """(max_step + 1,) weight of a row in L_epe and L_char by its pair step, from the training rows' steps.

    `step`: every step present weighs as much in total (w = mean count / count of the step), so that the
    many short-step pairs of a sequence (n-1 one-frame pairs, one neutral-apex pair) cannot outvote its
    few large-motion pairs; `none`: None (a plain mean).
    """
    if weighting == "none":
        return None
    if weighting != "step":
        raise ValueError(f"flow_loss_weighting is none or step, not {weighting!r}")
    counts = np.bincount(np.asarray(train_steps, np.int64))
    present = counts > 0
    w = np.zeros(len(counts), np.float64)
    w[present] = counts[present].mean() / counts[present]
    return w.astype(np.float32)


NEUTRAL = CLASS_NAMES.index("neutral")   # its label code


def flow_row_weights(step: torch.Tensor, label: torch.Tensor, step_table: torch.Tensor | None,
                     neutral_weight: float) -> torch.Tensor | None:
    """(N,) weights of a batch's rows in L_epe and L_char, or None for a plain mean.

    The step table's weight of each row's pair step (`step_weight_table`), times `neutral_weight` on rows labelled
    neutral. Under a per-pixel L1-like loss the answer to an input whose class G_F cannot tell is a weighted median
    over the classes it could be; weighting neutral rows up moves that median towards no motion, where most classes
    would otherwise draw a little mouth and brow motion onto a face that makes none.
    """
    w = None if step_table is None else step_table.to(step.device)[step.clamp(0, len(step_table) - 1)]
    if neutral_weight == 1.0:
        return w
    nw = 1.0 + (float(neutral_weight) - 1.0) * (label == NEUTRAL).float()
    return nw if w is None else w * nw
