"""embed_rows: the batch size changes speed only, never the embeddings (on CPU); embed_batch's sizes."""
import numpy as np
import pytest
import torch

from fewshot.config import load_config
from fewshot.evaluate.embed import batch_bounds, embed_batch, embed_rows
from fewshot.learners import create_learner


@pytest.mark.parametrize("channels_last", [False, True])
def test_embeddings_do_not_depend_on_the_batch_size(channels_last):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 28, 28, 1), dtype=np.uint8)
    rows = np.sort(rng.choice(300, 211, replace=False))
    torch.manual_seed(0)
    learner = create_learner(load_config("protonet"), 1, (28, 28), 64).eval()
    if channels_last:
        learner = learner.to(memory_format=torch.channels_last)
    cpu = torch.device("cpu")
    reference = embed_rows(learner.embed, images, rows, cpu, 500, "fp32", channels_last)
    assert reference.shape == (211, 64)
    # 211 rows: batches of 2, 3 and 7 end in a lone row, which joins the batch before it (see batch_bounds)
    for batch in (2, 3, 7, 64, None):
        assert torch.equal(embed_rows(learner.embed, images, rows, cpu, batch, "fp32", channels_last), reference)
    # the rows asked for, in their order: rows 5 and 6 of the result embed images[rows[5]] and images[rows[6]]
    pair = embed_rows(learner.embed, images, rows[5:7], cpu, 2, "fp32", channels_last)
    assert torch.equal(pair, reference[5:7])
    # a batch of one image alone takes other kernels: close, not always equal (why lone rows are merged)
    single = embed_rows(learner.embed, images, rows[5:6], cpu, 1, "fp32", channels_last)
    assert torch.allclose(single[0], reference[5], atol=1e-5)


def test_batch_bounds_merge_a_lone_last_row():
    assert batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert batch_bounds(9, 4) == [(0, 4), (4, 9)]
    assert batch_bounds(1, 4) == [(0, 1)]
    assert batch_bounds(3, 1) == [(0, 1), (1, 2), (2, 3)]  # one at a time, as asked
    assert batch_bounds(0, 4) == []


def test_embed_batch_small_on_cpu_large_on_gpu():
    assert embed_batch((28, 28, 1), "cpu") == 64
    assert embed_batch((32, 32, 3), "cpu") == 49
    assert embed_batch((84, 84, 3), "cpu") == 16
    assert embed_batch((1, 1, 1), "cpu") == 2000
    assert embed_batch((28, 28, 1), "cuda") == 2000
    assert embed_batch((84, 84, 3), "cuda") == 500
