"""Losses against brute-force loops and hand-worked values."""

import math

import pytest
import torch
import torch.nn.functional as F

from personlab.losses import CenterLoss, batch_hard_triplet_loss, label_smoothed_cross_entropy


def brute_force_triplet(features: torch.Tensor, labels: list[int], margin: float | None) -> float:
    rows = features.tolist()
    total = 0.0
    for i, a in enumerate(rows):
        d_ap, d_an = 0.0, math.inf
        for j, b in enumerate(rows):
            d = math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b)))
            if labels[j] == labels[i]:
                d_ap = max(d_ap, d)
            else:
                d_an = min(d_an, d)
        total += math.log1p(math.exp(d_ap - d_an)) if margin is None else max(0.0, d_ap - d_an + margin)
    return total / len(rows)


@pytest.mark.parametrize("margin", [0.3, None])
@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]])
def test_batch_hard_triplet_matches_double_loop(labels, margin):
    g = torch.Generator().manual_seed(len(labels))
    features = torch.randn(len(labels), 5, generator=g, dtype=torch.float64) * 0.7
    loss = batch_hard_triplet_loss(features, torch.tensor(labels), margin=margin)
    assert loss.item() == pytest.approx(brute_force_triplet(features, labels, margin), abs=1e-5)


def test_batch_hard_triplet_hand_worked():
    # 1-D points 0, 2 (id 0) and 1 (id 1): anchors 0 and 2 have d_ap = 2, d_an = 1 -> 1.3 each;
    # anchor 1 has d_ap = 0 (itself), d_an = 1 -> 0. Mean 2.6 / 3.
    features = torch.tensor([[0.0], [2.0], [1.0]])
    loss = batch_hard_triplet_loss(features, torch.tensor([0, 0, 1]), margin=0.3)
    assert loss.item() == pytest.approx(2.6 / 3, abs=1e-5)


def test_batch_hard_triplet_gradient_finite_on_duplicates():
    features = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    batch_hard_triplet_loss(features, torch.tensor([0, 0, 1])).backward()
    assert torch.isfinite(features.grad).all()


def test_batch_hard_triplet_needs_two_identities():
    with pytest.raises(ValueError, match="two identities"):
        batch_hard_triplet_loss(torch.randn(4, 3), torch.tensor([5, 5, 5, 5]))


def test_label_smoothing_hand_worked():
    # softmax([0, ln 2, 0]) = [1/4, 1/2, 1/4]; target 1, eps 0.1, C 3:
    # q = [0.1/3, 0.9 + 0.1/3, 0.1/3]; loss = -(2 * q0 * ln(1/4) + q1 * ln(1/2)).
    logits = torch.tensor([[0.0, math.log(2.0), 0.0]])
    q0, q1 = 0.1 / 3, 0.9 + 0.1 / 3
    expected = -(2 * q0 * math.log(0.25) + q1 * math.log(0.5))
    loss = label_smoothed_cross_entropy(logits, torch.tensor([1]), epsilon=0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_batch_mean_and_zero_epsilon():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 7, generator=g)
    targets = torch.tensor([0, 3, 6, 2, 2, 5])
    assert label_smoothed_cross_entropy(logits, targets, 0.0).item() == pytest.approx(
        F.cross_entropy(logits, targets).item(), rel=1e-6
    )
    eps = 0.2
    log_p = torch.log_softmax(logits, 1)
    per_sample = [
        -sum(((1 - eps) * (k == t) + eps / 7) * log_p[i, k].item() for k in range(7))
        for i, t in enumerate(targets.tolist())
    ]
    assert label_smoothed_cross_entropy(logits, targets, eps).item() == pytest.approx(
        sum(per_sample) / 6, rel=1e-6
    )


def test_center_loss_step_with_unscaled_gradient():
    # Features 1 and 3 of class 0, centers c0 = 0, c1 = 5; L_C = (1 + 9) / 2 = 5.
    # d(beta * L_C)/d c0 = beta * (-2/2) * ((1 - 0) + (3 - 0)) = -4 beta; divided by beta -> -4;
    # SGD lr 0.5: c0 = 0 + 0.5 * 4 = 2; c1 has no samples and stays 5.
    beta = 0.0005
    center = CenterLoss(num_classes=2, dim=1)
    with torch.no_grad():
        center.centers.copy_(torch.tensor([[0.0], [5.0]]))
    features = torch.tensor([[1.0], [3.0]], requires_grad=True)
    optimizer = torch.optim.SGD(center.parameters(), lr=0.5)
    loss = center(features, torch.tensor([0, 0]))
    assert loss.item() == pytest.approx(5.0)
    (beta * loss).backward()
    # the backbone side keeps beta: d(beta L)/df_i = beta * 2 (f_i - c0) / 2
    assert features.grad.flatten().tolist() == pytest.approx([beta * 1.0, beta * 3.0])
    center.unscale_grad(beta)
    optimizer.step()
    assert center.centers.detach().flatten().tolist() == pytest.approx([2.0, 5.0])


def test_center_init_is_standard_normal():
    torch.manual_seed(0)
    centers = CenterLoss(num_classes=200, dim=100).centers.detach()
    assert abs(centers.mean().item()) < 0.02 and abs(centers.std().item() - 1) < 0.02
