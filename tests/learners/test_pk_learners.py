"""The P x K learners: what they build, what `embed` uses, loss-name checks, parameter groups, metrics."""
from __future__ import annotations

import pytest
import torch

from fewshot.config import load_config
from fewshot.errors import FewshotError
from fewshot.learners import Batch, create_learner
from fewshot.learners.siamese import leave_one_out_accuracy
from fewshot.train.loop import build_optimizer

TINY = {"backbone.hidden": 8}


def make(method, **overrides):
    torch.manual_seed(0)
    return create_learner(load_config(method, {**TINY, **overrides}), 1, (28, 28), n_classes=6)


def pk_batch(p=3, k=2):
    torch.manual_seed(1)
    return Batch(torch.rand(p * k, 1, 28, 28), torch.tensor([5, 0, 3][:p]).repeat_interleave(k), "pk")


@pytest.mark.parametrize("method,loss_module", [("siamese-triplet", "triplet"), ("center", "center_loss"),
                                                ("ce", "cross_entropy")])
def test_pk_learners_train_on_pk_batches_and_give_finite_losses(method, loss_module):
    learner = make(method)
    assert learner.batch_kind == "pk" and hasattr(learner, loss_module) and learner.cir is None
    loss, metrics = learner.loss(pk_batch())
    loss.backward()
    assert torch.isfinite(loss) and 0.0 <= metrics["train_acc"] <= 1.0
    assert all(p.grad is not None for p in learner.backbone.parameters())


def test_classifier_embed_ignores_the_linear_head():
    learner = make("ce").eval()
    images = pk_batch().images
    before = learner.embed(images)
    assert before.shape == (6, 64) and learner.classifier.out_features == 6
    with torch.no_grad():
        learner.classifier.weight.add_(1.0)
    assert torch.equal(learner.embed(images), before)


def test_cir_modules_and_banks_are_in_the_state_dict():
    state = make("center-cir", **{"cir.means": "memory", "loss.center_update": "ema"}).state_dict()
    assert state["center_loss.centers"].shape == (6, 64) and state["cir.memory"].shape == (6, 64)
    assert "center_loss.centers" in dict(make("center").named_parameters())
    assert make("siamese-triplet-cir").cir.p == 0.5 and make("ce-cir").cir.position == "before_norm"


def test_cir_is_off_in_eval_mode():
    learner = make("ce-cir", **{"cir.p": 1.0, "cir.alpha": 1.0, "cir.alpha_random": False})
    batch = pk_batch()
    learner.eval()
    torch.manual_seed(2)
    off, _ = learner.loss(batch)
    learner.cir = None
    torch.manual_seed(2)
    plain, _ = learner.loss(batch)
    assert off.item() == plain.item()


def test_a_learner_refuses_a_loss_it_cannot_train_with():
    with pytest.raises(FewshotError, match="learner 'siamese' trains with loss.name = 'triplet'"):
        make("siamese-triplet", **{"loss.name": "cross_entropy"})
    with pytest.raises(FewshotError, match="'center'"):
        make("ce", **{"learner": "center"})


def test_center_learning_rate_scale_makes_its_own_parameter_group():
    config = load_config("center", {**TINY, "loss.center_lr_scale": 10.0, "optim.lr": 0.002})
    learner = create_learner(config, 1, (28, 28), n_classes=6)
    optimizer, _ = build_optimizer(learner, config)
    rest, centers = optimizer.param_groups
    assert rest["lr"] == 0.002 and centers["lr"] == pytest.approx(0.02)
    assert centers["params"] == [learner.center_loss.centers]
    assert len(rest["params"]) + 1 == len(list(learner.parameters()))
    ema = load_config("center", {**TINY, "loss.center_update": "ema"})
    assert len(build_optimizer(create_learner(ema, 1, (28, 28), 6), ema)[0].param_groups) == 1


def test_leave_one_out_accuracy_hand_computed():
    x = torch.tensor([[0.0], [0.1], [1.0], [1.2], [0.15]])
    y = torch.tensor([0, 0, 1, 1, 1])
    # Nearest others: 0->0.1 (0 ok), 0.1->0.15 (1 wrong), 1.0->1.2 ok, 1.2->1.0 ok, 0.15->0.1 (0 wrong).
    assert leave_one_out_accuracy(x, y) == pytest.approx(3 / 5)
