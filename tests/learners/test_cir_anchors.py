"""cir.apply_to for the triplet (siamese) learner: moved anchors against clean positives and negatives, by hand."""
from __future__ import annotations

import pytest
import torch

from fewshot.config import load_config
from fewshot.errors import FewshotError
from fewshot.learners import Batch, create_learner
from fewshot.losses.triplet import TripletMarginLoss
from fewshot.regularizers.cir import ClassInterference

# 1-D features of two classes: 0, 1 (class 0, mean 0.5) and 4, 5 (class 1, mean 4.5). CIR with p = 1,
# alpha = 0.5, negative "mean" moves each halfway to the other class's mean: 2.25, 2.75, 2.25, 2.75.
FEATURES = torch.tensor([[0.0], [1.0], [4.0], [5.0]])
LABELS = torch.tensor([0, 0, 1, 1])
CIR = {"cir.enabled": True, "cir.p": 1.0, "cir.alpha": 0.5, "cir.negative": "mean", "cir.means": "batch",
       "cir.position": "before_norm"}
TRIPLET = {"loss.margin": 0.2, "loss.mining": "batch_hard", "loss.triplet_reduction": "mean"}
# Batch-hard, margin 0.2, mean over anchors, by hand:
# anchors only: anchor 2.25 (class 0): farthest positive 1 (1.25), nearest negative 4 (1.75): relu(-0.3) = 0;
#   2.75: positive 0 (2.75), negative 4 (1.25): 1.7; 2.25 (class 1): positive 5 (2.75), negative 1 (1.25): 1.7;
#   2.75: positive 4 (1.25), negative 1 (1.75): 0. Mean 0.85.
# all moved: every anchor has its positive 0.5 away and a negative at 0: 0.7 each. Mean 0.7.
ANCHORS_ONLY, ALL_MOVED = 0.85, 0.7


def test_the_triplet_loss_with_clean_references_by_hand():
    moved = ClassInterference(2, 1, p=1.0, alpha=0.5, negative="mean", position="before_norm").train()(FEATURES, LABELS)
    assert moved.flatten().tolist() == [2.25, 2.75, 2.25, 2.75]
    loss = TripletMarginLoss(margin=0.2, triplet_reduction="mean")
    assert loss(moved, LABELS, references=FEATURES).item() == pytest.approx(ANCHORS_ONLY)
    assert loss(moved, LABELS).item() == pytest.approx(ALL_MOVED)


@pytest.mark.parametrize("apply_to, expected", [("anchors", ANCHORS_ONLY), ("all", ALL_MOVED)])
def test_the_siamese_learner_moves_what_apply_to_says(apply_to, expected):
    config = load_config("siamese-triplet", {**CIR, **TRIPLET, "cir.apply_to": apply_to, "head.normalize": False,
                                             "backbone.hidden": 8})
    learner = create_learner(config, 1, (28, 28), n_classes=2).train()
    learner.features = lambda images: FEATURES  # the features the backbone would give, set by hand
    loss, _ = learner.loss(Batch(torch.zeros(4, 1, 28, 28), LABELS, "pk"))
    assert loss.item() == pytest.approx(expected)


def test_anchors_only_is_refused_where_there_are_no_anchors():
    with pytest.raises(FewshotError, match="cir.apply_to = 'anchors' is for the triplet"):
        create_learner(load_config("center-cir", {"cir.apply_to": "anchors", "backbone.hidden": 8}), 1, (28, 28), 2)
    with pytest.raises(FewshotError, match="cir.apply_to = 'some' is not one of all, anchors"):
        create_learner(load_config("siamese-triplet-cir", {"cir.apply_to": "some", "backbone.hidden": 8}), 1,
                       (28, 28), 2)
