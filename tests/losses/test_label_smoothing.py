import math

import pytest
import torch
import torch.nn.functional as F

from fewshot.errors import FewshotError
from fewshot.losses import create_loss, list_losses
from fewshot.losses.label_smoothing import LabelSmoothingCrossEntropy


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_equals_torch_label_smoothing(eps):
    torch.manual_seed(0)
    logits, labels = torch.randn(10, 7), torch.randint(0, 7, (10,))
    ours = LabelSmoothingCrossEntropy(eps)(logits, labels)
    assert ours.item() == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=eps).item(), rel=1e-6)


def test_hand_computed_two_classes():
    # logits [0, 0]: log p = -log 2 for both, so any eps gives log 2; logits [log 3, 0]: p = (3/4, 1/4).
    loss = LabelSmoothingCrossEntropy(0.2)
    assert loss(torch.zeros(1, 2), torch.tensor([0])).item() == pytest.approx(math.log(2))
    expected = 0.8 * -math.log(0.75) + 0.2 * (-math.log(0.75) - math.log(0.25)) / 2
    assert loss(torch.tensor([[math.log(3), 0.0]]), torch.tensor([0])).item() == pytest.approx(expected)


def test_registered_under_both_names_and_bad_eps():
    assert {"cross_entropy", "label_smoothing", "triplet", "center_contrastive", "prototypical"} <= set(list_losses())
    from fewshot.config import load_config

    config = load_config("protonet", {"loss.name": "label_smoothing", "loss.smoothing": 0.1})
    assert create_loss(config).smoothing == 0.1
    with pytest.raises(FewshotError, match="loss.smoothing"):
        LabelSmoothingCrossEntropy(1.0)
