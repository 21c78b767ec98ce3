"""Re-ID losses: batch-hard triplet, label-smoothed cross-entropy and center loss (BoT's definitions);
DG-Net's LSGAN losses (with its R1-style penalty on real images) and L1 reconstruction.

Plain cross-entropy is ``torch.nn.functional.cross_entropy``. Every loss returns a scalar mean over the batch
and computes in float32 even under autocast, so fp16 logits or features cannot overflow the sums.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CenterLoss",
    "batch_hard_triplet_loss",
    "euclidean_distances",
    "label_smoothed_cross_entropy",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "reconstruction_loss",
]


def euclidean_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances ``(len(x), len(y))``; the square is clamped at 1e-12 so that the
    gradient of the square root stays finite on identical pairs (a sample and itself)."""
    x, y = x.float(), y.float()
    sq = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1).unsqueeze(0) - 2 * x @ y.t()
    return sq.clamp(min=1e-12).sqrt()


def batch_hard_triplet_loss(
    features: torch.Tensor, labels: torch.Tensor, margin: float | None = 0.3
) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al.) on unnormalised features, as BoT uses it.

    For each anchor: the farthest sample of its identity (itself included) and the nearest of any other
    identity; ``mean(max(0, d_ap − d_an + margin))``, or the soft margin ``mean(log(1 + exp(d_ap − d_an)))``
    when ``margin`` is None. Masked max/min, so identities may have different numbers of samples.
    """
    if features.shape[0] != labels.shape[0]:
        raise ValueError(f"{features.shape[0]} features but {labels.shape[0]} labels")
    dist = euclidean_distances(features, features)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    if bool(same.all()):
        raise ValueError("batch-hard triplet loss needs at least two identities in the batch (no negatives)")
    d_ap = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    d_an = dist.masked_fill(same, float("inf")).amin(dim=1)
    if margin is None:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(d_ap - d_an + margin).mean()


def label_smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Cross-entropy against ``q = (1 − ε)·onehot(y) + ε/C`` (ε/C also goes to the true class, as in BoT)."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    num_classes = logits.shape[1]
    q = torch.full_like(log_probs, epsilon / num_classes)
    q.scatter_add_(1, targets.unsqueeze(1), torch.full_like(log_probs[:, :1], 1 - epsilon))
    return -(q * log_probs).sum(1).mean()


class CenterLoss(nn.Module):
    """Center loss (Wen et al.): ``mean_i ||f_i − c_{y_i}||²`` with learnable centers initialised N(0, 1).

    BoT trains the centers with their own SGD (lr 0.5) on the total loss ``... + β·L_C``; before that step the
    center gradients are divided by β (:meth:`unscale_grad`) so the center update does not depend on β while
    the backbone still receives β times the loss's gradient.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.centers[labels]).pow(2).sum(1).mean()

    def unscale_grad(self, weight: float) -> None:
        """Divide the centers' gradient by the loss weight β (call after backward, before the center step)."""
        if self.centers.grad is not None:
            self.centers.grad.div_(weight)


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DG-Net's reconstruction term: mean absolute error against a **detached** target, so a code or image
    being reconstructed is never pulled towards its reconstruction."""
    return (output.float() - target.detach().float()).abs().mean()


def lsgan_generator_loss(fake_scores: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator term summed over the discriminator's scales: ``Σ_s 2·mean((D_s(fake) − 1)²)``.

    The factor 2 is DG-Net's (its ``calc_gen_loss``); it doubles the adversarial weight relative to gan_w.
    """
    return sum(2.0 * (s.float() - 1.0).pow(2).mean() for s in fake_scores)


def lsgan_discriminator_loss(
    discriminator: nn.Module, fake: torch.Tensor, real: torch.Tensor, r1_weight: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """LSGAN discriminator loss with DG-Net's gradient penalty on **real** images only.

    Per scale s: ``mean(D_s(fake)²) + mean((D_s(real) − 1)²) + λ·mean_b ||∂ Σ D_s(real) / ∂ real_b||²``, the
    gradient taken with respect to the full-resolution real batch (so it runs through the pooling between
    scales). ``discriminator(x)`` returns one score map per scale. ``fake`` is detached here. Returns
    ``(loss including the penalty, penalty)``; the penalty is kept in the graph (``create_graph``) so the
    discriminator is trained to keep its gradients small.
    """
    real = real.detach().requires_grad_(True)
    fake_scores = discriminator(fake.detach())
    real_scores = discriminator(real)
    loss = real.new_zeros(())
    penalty = real.new_zeros(())
    for out_fake, out_real in zip(fake_scores, real_scores):
        loss = loss + out_fake.float().pow(2).mean() + (out_real.float() - 1.0).pow(2).mean()
        (grad,) = torch.autograd.grad(out_real.sum(), real, create_graph=True)
        penalty = penalty + r1_weight * grad.float().pow(2).flatten(1).sum(1).mean()
    return loss + penalty, penalty
