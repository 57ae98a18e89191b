import pytest
import torch

from fewshot.errors import FewshotError
from fewshot.losses import create_loss
from fewshot.losses.triplet import TripletMarginLoss

pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import distances, losses, miners, reducers  # noqa: E402


def batch(p=4, k=3, d=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(p * k, d, generator=generator, dtype=torch.float64).float()
    labels = torch.arange(p).repeat_interleave(k)
    return embeddings, labels


def test_hand_computed_on_four_points():
    # Class 0 at x=0 and x=1, class 1 at x=1.5 and x=3 (1-D). margin 0.2.
    x = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
    y = torch.tensor([0, 0, 1, 1])
    # Batch-hard: anchor 0: hp=1, hn=1.5 -> relu(1-1.5+.2)=0;  anchor 1: hp=1, hn=0.5 -> 0.7;
    #             anchor 2: hp=1.5, hn=0.5 -> 1.2;              anchor 3: hp=1.5, hn=2 -> 0.
    hard = TripletMarginLoss(margin=0.2, mining="batch_hard")
    assert hard(x, y).item() == pytest.approx((0.7 + 1.2) / 2)  # mean over the two active anchors
    assert TripletMarginLoss(margin=0.2, mining="batch_hard", triplet_reduction="mean")(x, y).item() == \
        pytest.approx((0.7 + 1.2) / 4)
    # All 8 triplets (a,p,n): (0,1,2):-0.3->0 (0,1,3):-1.8->0 (1,0,2):0.7 (1,0,3):-0.8->0
    # (2,3,0):-0.0 -> relu(1.5-1.5+.2)=0.2 (2,3,1):1.2 (3,2,0):-1.3->0 (3,2,1):-0.3->0
    every = TripletMarginLoss(margin=0.2, mining="all")
    assert every(x, y).item() == pytest.approx((0.7 + 0.2 + 1.2) / 3)
    assert TripletMarginLoss(margin=0.2, mining="all", triplet_reduction="mean")(x, y).item() == \
        pytest.approx((0.7 + 0.2 + 1.2) / 8)
    # Semi-hard keeps 0 < d_an - d_ap <= 0.2: only (2,3,0) with gap 0, excluded -> no triplet -> 0.
    assert TripletMarginLoss(margin=0.2, mining="semi_hard")(x, y).item() == 0.0
    # Soft margin: softplus(violation) over every triplet (all > 0, so both reductions agree).
    violations = torch.tensor([-0.3, -1.8, 0.7, -0.8, 0.2, 1.2, -1.3, -0.3])
    soft = TripletMarginLoss(margin=0.2, mining="all", soft_margin=True)
    assert soft(x, y).item() == pytest.approx(torch.nn.functional.softplus(violations).mean().item(), rel=1e-6)


def test_semi_hard_hand_computed():
    # Anchor 0 at 0, positive at 1, negatives at 1.1 (gap .1: semi-hard) and 1.3 (gap .3: too easy).
    x = torch.tensor([[0.0], [1.0], [1.1], [1.3]])
    y = torch.tensor([0, 0, 1, 1])
    # Other anchors: (1,0,2): d_ap=1, d_an=.1 -> hard (gap<0), excluded; (1,0,3): d_an=.3 hard; (2,3,0): d_ap=.2,
    # d_an=1.1 easy; (2,3,1): d_an=.1, gap -.1 hard; (3,2,0): d_ap .2, d_an 1.3 easy; (3,2,1): d_an .3, gap .1 semi.
    loss = TripletMarginLoss(margin=0.2, mining="semi_hard")(x, y)
    # Semi-hard triplets: (0,1,2): 1-1.1+.2=.1 and (3,2,1): .2-.3+.2=.1
    assert loss.item() == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("soft_margin", [False, True])
@pytest.mark.parametrize("mining", ["all", "semi_hard", "batch_hard"])
@pytest.mark.parametrize("reduction", ["nonzero", "mean"])
def test_equals_pytorch_metric_learning(distance, soft_margin, mining, reduction):
    embeddings, labels = batch(seed=len(distance) + 2 * soft_margin + 3 * len(mining))
    pml_distance = distances.LpDistance(normalize_embeddings=False) if distance == "euclidean" \
        else distances.CosineSimilarity()
    reducer = reducers.AvgNonZeroReducer() if reduction == "nonzero" else reducers.MeanReducer()
    reference = losses.TripletMarginLoss(margin=0.2, smooth_loss=soft_margin, distance=pml_distance,
                                         reducer=reducer)
    if mining == "batch_hard":
        miner = miners.BatchHardMiner(distance=pml_distance)
    else:
        # "all" triplets; pml's miner type "all" keeps only margin violators, which changes the "mean" reducer's
        # denominator, so the full set of triplets is passed instead (pml's default without a miner).
        miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=pml_distance) \
            if mining == "semi_hard" else None
    expected = reference(embeddings, labels, miner(embeddings, labels) if miner else None)
    ours = TripletMarginLoss(margin=0.2, distance=distance, mining=mining, soft_margin=soft_margin,
                             triplet_reduction=reduction)(embeddings, labels)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert ours.item() > 0


def test_all_mining_equals_pml_all_miner_under_nonzero_average():
    embeddings, labels = batch(p=5, k=4, d=8, seed=3)
    pml_distance = distances.LpDistance(normalize_embeddings=False)
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="all", distance=pml_distance)
    reference = losses.TripletMarginLoss(margin=0.2, distance=pml_distance)
    expected = reference(embeddings, labels, miner(embeddings, labels))
    ours = TripletMarginLoss(margin=0.2, mining="all")(embeddings, labels)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradients_finite_with_duplicate_embeddings_and_zero_when_nothing_is_active():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 5.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    for mining in ("batch_hard", "semi_hard", "all"):
        loss = TripletMarginLoss(margin=0.2, mining=mining)(x, y)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() == 0


def test_gradient_pulls_positive_and_pushes_negative():
    x = torch.tensor([[0.0], [1.0], [1.5], [3.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    TripletMarginLoss(margin=0.2, mining="batch_hard")(x, y).backward()
    # Active anchors 1 and 2, averaged. d/dx1 of anchor 1's d(1,0) - d(1,2) is 1 + 1, of anchor 2's -d(2,1) is 1:
    # (1 + 1 + 1) / 2 = 1.5 > 0, so descent moves x1 left: towards its positive (0), away from the negative (1.5).
    assert x.grad[1].item() == pytest.approx(1.5)


def test_create_loss_from_config_and_bad_values():
    from fewshot.config import load_config

    config = load_config("siamese-triplet", {"loss.mining": "all", "loss.margin": 0.3})
    loss = create_loss(config)
    assert isinstance(loss, TripletMarginLoss) and loss.margin == 0.3 and loss.mining == "all"
    with pytest.raises(FewshotError, match="loss.mining"):
        TripletMarginLoss(mining="hardest")
    with pytest.raises(FewshotError, match="loss.name"):
        create_loss(config, allowed=("center_contrastive",), learner="center")
