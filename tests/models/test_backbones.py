"""ResNet-12 and ResNet-18: output sizes at 84x84 and 28x28 (tiny batches: ResNet-12 is slow on CPU), DropBlock."""
from __future__ import annotations

import pytest
import torch

from fewshot.errors import FewshotError
from fewshot.models import create_backbone, list_backbones
from fewshot.models.backbones.resnet12 import DropBlock


@pytest.mark.parametrize("name,dim", [("resnet12", 640), ("resnet18", 512)])
@pytest.mark.parametrize("size,channels", [(84, 3), (28, 1)])
def test_output_shape(name, dim, size, channels):
    torch.manual_seed(0)
    net = create_backbone(name, in_channels=channels).eval()
    with torch.no_grad():
        out = net(torch.rand(2, channels, size, size))
    assert out.shape == (2, dim) and net.out_dim(size, size) == dim and torch.isfinite(out).all()


def test_registered_and_resnet12_is_the_12_million_parameter_network():
    assert {"resnet12", "resnet18"} <= set(list_backbones())
    assert sum(p.numel() for p in create_backbone("resnet12").parameters()) == 12_424_320
    # torchvision's resnet18 without fc (11,176,512) with a 3x3 stem (1,728 weights instead of 9,408).
    assert sum(p.numel() for p in create_backbone("resnet18").parameters()) == 11_176_512 - 9_408 + 1_728


def test_resnet12_dropblock_switch_and_too_small_images():
    net = create_backbone("resnet12", in_channels=1, dropblock=0.1)
    drops = [m for m in net.modules() if isinstance(m, DropBlock)]
    assert len(drops) == 2 and all(d.drop_rate == 0.1 for d in drops)
    with pytest.raises(FewshotError, match="at least 16x16"):
        net.out_dim(8, 8)
    with pytest.raises(FewshotError, match="backbone.dropblock"):
        create_backbone("resnet12", dropblock=1.5)


def test_dropblock_drops_blocks_at_about_the_rate_and_keeps_the_mean():
    torch.manual_seed(0)
    block = DropBlock(0.1, block_size=3)
    x = torch.ones(64, 16, 10, 10)
    y = block(x)
    dropped = y == 0
    assert dropped.float().mean().item() == pytest.approx(0.1, abs=0.02)
    assert y.mean().item() == pytest.approx(1.0, abs=1e-5)
    # Zeros come in blocks: a dropped unit has a dropped neighbour (in a 3x3 block every unit has one).
    neighbours = torch.nn.functional.max_pool2d(dropped.float(), 3, 1, 1) * 9 - dropped.float()
    assert ((neighbours > 0) | ~dropped).all()
    assert torch.equal(block.eval()(x), x)


def test_learner_passes_dropblock_only_to_resnet12():
    from fewshot.config import load_config
    from fewshot.learners import create_learner

    config = load_config("ce", {"backbone.name": "resnet12", "backbone.dropblock": 0.05})
    learner = create_learner(config, 3, (84, 84), n_classes=5)
    assert learner.embedding_dim == 640 and learner.backbone.blocks[3].out[2].drop_rate == 0.05
    resnet18 = create_learner(load_config("ce", {"backbone.name": "resnet18"}), 1, (28, 28), n_classes=5)
    assert resnet18.embedding_dim == 512
