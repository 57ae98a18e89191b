"""A prepared split is a plain torch Dataset (and SplitDataset a subclass), and learn2learn's MetaDataset/TaskDataset can draw tasks from it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fewshot.data.store import Store, StoreWriter
from fewshot.data.torch_dataset import SplitDataset

N_CLASSES, PER_CLASS = 4, 5


@pytest.fixture
def rgb_store(tmp_path):
    """4 classes x 5 images of 6x6x3; image (c, i) is solid with R = 10c + i, G = 100 + c, B = 7."""
    images = np.zeros((N_CLASSES * PER_CLASS, 6, 6, 3), np.uint8)
    labels = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    ranks = np.tile(np.arange(PER_CLASS), N_CLASSES)
    images[..., 0] = (10 * labels + ranks)[:, None, None]
    images[..., 1] = (100 + labels)[:, None, None]
    images[..., 2] = 7
    order = np.random.default_rng(0).permutation(len(images))  # source order need not be grouped
    with StoreWriter(tmp_path / "store", "toy", "test") as writer:
        writer.add_split("train", images[order], labels[order], [f"c{c}" for c in range(N_CLASSES)])
    return Store(tmp_path / "store").split("train")


def test_split_is_a_torch_dataset(rgb_store):
    assert len(rgb_store) == N_CLASSES * PER_CLASS
    image, label = rgb_store[7]  # class 1 (rows 5..9), so label 1 and G = 101
    assert image.shape == (3, 6, 6) and image.dtype == torch.float32 and label == 1
    assert torch.allclose(image[1], torch.full((6, 6), 101 / 255))
    batches = list(DataLoader(rgb_store, batch_size=8, shuffle=False))
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert images.shape == (20, 3, 6, 6)
    assert labels.tolist() == np.repeat(np.arange(N_CLASSES), PER_CLASS).tolist()
    # G encodes the class: every image agrees with its label.
    assert torch.equal((images[:, 1, 0, 0] * 255).round().long() - 100, labels)


def test_split_dataset_is_a_torch_dataset_subclass_with_a_class_index(rgb_store):
    dataset = SplitDataset(rgb_store)
    assert isinstance(dataset, torch.utils.data.Dataset) and len(dataset) == 20
    assert dataset.labels_to_indices() == {c: list(range(5 * c, 5 * c + 5)) for c in range(N_CLASSES)}
    image, label = dataset[13]  # rows 10..14 are class 2: G = 102
    assert label == 2 and torch.allclose(image[1, 0, 0], torch.tensor(102 / 255))
    raw = [SplitDataset(rgb_store, transform=lambda a: a[0, 0].tolist())[row] for row in range(10, 15)]
    assert sorted(pixel for pixel, _ in raw) == [[20 + i, 102, 7] for i in range(5)]  # R = 10c + i, any order
    assert {label for _, label in raw} == {2}


def test_learn2learn_tasks_from_a_split(rgb_store):
    l2l = pytest.importorskip("learn2learn")
    from learn2learn.data.transforms import KShots, LoadData, NWays, RemapLabels

    dataset = SplitDataset(rgb_store)  # MetaDataset insists on a torch Dataset subclass
    meta = l2l.data.MetaDataset(dataset, labels_to_indices=dataset.labels_to_indices())
    assert meta.labels_to_indices[2] == [10, 11, 12, 13, 14]
    tasks = l2l.data.TaskDataset(meta, task_transforms=[NWays(meta, 3), KShots(meta, 2), LoadData(meta),
                                                        RemapLabels(meta)], num_tasks=5)
    for _ in range(3):
        images, labels = tasks.sample()
        assert images.shape == (6, 3, 6, 6)
        assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
        classes = (images[:, 1, 0, 0] * 255).round().long() - 100  # true store class of each image
        for task_label in range(3):  # each remapped label holds images of one store class
            assert len(set(classes[labels == task_label].tolist())) == 1
