import math

import pytest
import torch
import torch.nn.functional as F

from fewshot.errors import FewshotError
from fewshot.losses.center_contrastive import CenterContrastiveLoss

R = 1 / math.sqrt(2)


def loss_with_centers(centers, **kw):
    loss = CenterContrastiveLoss(n_classes=len(centers), dim=2, **kw)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor(centers))
    return loss


def test_margin_variant_hand_computed():
    # x at 45 degrees between c0 and c1: both cosines 1/sqrt2. s=2, m=0.2, lambda=0.5, label 0.
    loss = loss_with_centers([[1.0, 0.0], [0.0, 3.0]], scale=2.0, center_margin=0.2, center_lambda=0.5)
    value = loss(torch.tensor([[5.0, 5.0]]), torch.tensor([0]))
    # -log[e^{2(R-.2)} / (e^{2(R-.2)} + e^{2R})] = log(1 + e^{0.4}); minus 2 * 0.5 * R.
    assert value.item() == pytest.approx(math.log(1 + math.exp(0.4)) - R, rel=1e-6)


def test_lambda_zero_is_cosface_margin_softmax():
    loss = loss_with_centers([[1.0, 0.0], [0.0, 1.0]], scale=2.0, center_margin=0.2, center_lambda=0.0)
    assert loss(torch.tensor([[1.0, 1.0]]), torch.tensor([0])).item() == pytest.approx(math.log(1 + math.exp(0.4)))


def test_equals_the_documented_formula_on_random_inputs():
    torch.manual_seed(0)
    loss = CenterContrastiveLoss(n_classes=5, dim=4, scale=8.0, center_margin=0.3, center_lambda=0.7)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 4, 0])
    cos = (F.normalize(x.double(), dim=1) @ F.normalize(loss.centers.detach().double(), dim=1).T)
    expected = []
    for i in range(6):
        own = cos[i, y[i]]
        numerator = torch.exp(8.0 * (own - 0.3) + 2 * 0.7 * own)
        denominator = torch.exp(8.0 * (own - 0.3)) + sum(torch.exp(8.0 * cos[i, j]) for j in range(5) if j != y[i])
        expected.append(-torch.log(numerator / denominator))
    assert loss(x, y).item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)


def test_temperature_variant_hand_computed():
    loss = loss_with_centers([[1.0, 0.0], [0.0, 1.0]], variant="temperature", temperature=0.5, center_lambda=1.0)
    # logits cos/tau = [2, 0] for x = c0: CE = log(1 + e^-2); pull -2 * 1 * 1.
    assert loss(torch.tensor([[3.0, 0.0]]), torch.tensor([0])).item() == pytest.approx(math.log(1 + math.exp(-2)) - 2)


def test_gradient_centers_are_parameters_and_learn():
    loss = loss_with_centers([[1.0, 0.0], [0.0, 1.0]], scale=2.0)
    assert [name for name, _ in loss.named_parameters()] == ["centers"]
    loss(torch.tensor([[1.0, 1.0]]), torch.tensor([0])).backward()
    # The own center turns towards x (+y direction), the other away from it (-x direction).
    assert loss.centers.grad[0, 1] < 0 and loss.centers.grad[1, 0] > 0


def test_ema_centers_hand_computed_and_frozen_in_eval():
    loss = CenterContrastiveLoss(n_classes=2, dim=2, scale=2.0, center_margin=0.2, center_update="ema",
                                 center_momentum=0.9)
    assert list(loss.parameters()) == [] and "centers" in loss.state_dict()
    # Step 1: the bank is zero, so every cosine is 0: CE over logits [-s m, 0] = log(1 + e^{0.4}), no pull.
    first = loss(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]))
    assert first.item() == pytest.approx(math.log(1 + math.exp(0.4)))
    # The class-0 center becomes the direction of its mean (first sighting); class 1 stays unseen (zero).
    assert loss.centers.flatten().tolist() == pytest.approx([R, R, 0.0, 0.0])
    # Step 2: x = (1, 0): cos0 = R, cos1 = 0: log(1 + e^{-2(R - .2)}) - 2 R (lambda 1).
    second = loss(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    assert second.item() == pytest.approx(math.log(1 + math.exp(-2 * (R - 0.2))) - 2 * R)
    moved = F.normalize(torch.tensor([0.9 * R + 0.1, 0.9 * R]), dim=0)
    assert loss.centers[0].tolist() == pytest.approx(moved.tolist())
    loss.eval()
    loss(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    assert loss.centers[1].tolist() == [0.0, 0.0]


def test_ema_sends_no_gradient_to_centers_but_to_features():
    loss = CenterContrastiveLoss(n_classes=3, dim=4, center_update="ema")
    x = torch.randn(6, 4, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    loss(x, y)
    value = loss(x, y)  # second call: the bank now holds centers
    value.backward()
    assert not loss.centers.requires_grad and x.grad.abs().sum() > 0


def test_bad_switches_are_user_errors():
    with pytest.raises(FewshotError, match="loss.variant"):
        CenterContrastiveLoss(2, 2, variant="arcface")
    with pytest.raises(FewshotError, match="loss.center_update"):
        CenterContrastiveLoss(2, 2, center_update="sgd")
