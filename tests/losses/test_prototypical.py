import torch

from fewshot.losses import create_loss
from fewshot.losses.prototypical import prototypical_loss


def test_registered_prototypical_loss_wraps_the_function():
    from fewshot.config import load_config

    torch.manual_seed(0)
    embeddings = torch.randn(3 * 2 + 3 * 4, 5)
    loss = create_loss(load_config("protonet"))
    assert loss(embeddings, 3, 2, 4).item() == prototypical_loss(embeddings, 3, 2, 4)[0].item()
