import pytest
import torch
import torch.nn.functional as F

from fewshot.config import load_config
from fewshot.errors import FewshotError
from fewshot.regularizers import ClassInterference, create_regularizer


def pk_batch(p=4, k=3, d=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor([7, 2, 5, 0][:p]).repeat_interleave(k)  # global class indices, any order
    return torch.randn(p * k, d, generator=generator), labels


def class_means(x, labels):
    return {int(c): x[labels == c].mean(0) for c in labels.unique()}


def cir(**kw):
    settings = dict(n_classes=8, dim=6, p=1.0, alpha=1.0, position="before_norm")
    settings.update(kw)
    return ClassInterference(**settings)


def test_p_zero_is_identity_and_eval_mode_is_off():
    x, y = pk_batch()
    assert torch.equal(cir(p=0.0)(x, y), x)
    module = cir().eval()
    assert torch.equal(module(x, y), x)


def test_full_step_lands_on_a_negative_class_mean_never_the_own():
    torch.manual_seed(0)
    x, y = pk_batch()
    means = class_means(x, y)
    chosen = []
    for _ in range(20):
        out = cir()(x, y)
        for feature, label in zip(out, y.tolist()):
            matches = [c for c, mu in means.items() if torch.allclose(feature, mu, atol=1e-6)]
            assert len(matches) == 1 and matches[0] != label
            chosen.append(matches[0])
    assert set(chosen) == set(means)  # every class serves as somebody's negative


def test_partial_step_moves_along_the_line_to_the_negative_mean():
    torch.manual_seed(1)
    x, y = pk_batch()
    means = class_means(x, y)
    out = cir(alpha=0.3)(x, y)
    for feature, original, label in zip(out, x, y.tolist()):
        targets = [c for c, mu in means.items() if torch.allclose(feature, original + 0.3 * (mu - original), atol=1e-6)]
        assert len(targets) == 1 and targets[0] != label


def test_random_alpha_stays_within_zero_and_alpha():
    torch.manual_seed(2)
    x, y = pk_batch(p=2, k=50)
    out = cir(alpha=0.4, alpha_random=True)(x, y)
    means = class_means(x, y)
    other = torch.stack([means[7] if label == 2 else means[2] for label in y.tolist()])
    fraction = ((out - x) * (other - x)).sum(1) / (other - x).pow(2).sum(1)  # two classes: the target is known
    assert torch.allclose(out - x, fraction[:, None] * (other - x), atol=1e-5)
    assert fraction.min() >= 0 and fraction.max() <= 0.4 and fraction.std() > 0.05


def test_probability_p_moves_about_that_fraction():
    torch.manual_seed(3)
    x, y = pk_batch(p=4, k=500)
    moved = (cir(p=0.3)(x, y) != x).any(1).float().mean().item()
    assert moved == pytest.approx(0.3, abs=0.04)


def test_mean_negative_is_the_mean_of_the_other_class_means():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0], [8.0, 8.0]])
    y = torch.tensor([0, 0, 1, 1, 2])  # means (1,0), (0,5), (8,8)
    out = ClassInterference(3, 2, p=1.0, alpha=0.5, negative="mean", position="before_norm").train()(x, y)
    # Class 0 sample (0,0): target ((0,5)+(8,8))/2 = (4,6.5), half-way: (2, 3.25).
    assert out[0].tolist() == pytest.approx([2.0, 3.25])
    # Class 2 sample (8,8): target ((1,0)+(0,5))/2 = (.5,2.5) -> (4.25, 5.25).
    assert out[4].tolist() == pytest.approx([4.25, 5.25])


def test_a_batch_of_one_class_is_left_alone():
    x = torch.randn(4, 3)
    assert torch.equal(ClassInterference(2, 3, p=1.0, alpha=1.0)(x, torch.zeros(4, dtype=torch.long)), x)


def test_after_norm_moves_directions_and_keeps_lengths():
    torch.manual_seed(4)
    x, y = pk_batch()
    out = cir(position="after_norm")(x, y)
    assert torch.allclose(out.norm(dim=1), x.norm(dim=1), atol=1e-5)
    unit_means = class_means(F.normalize(x, dim=1), y)
    for feature, label in zip(F.normalize(out, dim=1), y.tolist()):
        matches = [c for c, mu in unit_means.items() if torch.allclose(feature, F.normalize(mu, dim=0), atol=1e-5)]
        assert len(matches) == 1 and matches[0] != label


def test_means_are_constants_unless_asked():
    x, y = pk_batch(p=2, k=2)
    for through, expect_other_grad in ((False, False), (True, True)):
        leaf = x.clone().requires_grad_(True)
        out = cir(alpha=0.5, grad_through_means=through)(leaf, y)
        out[0].sum().backward()
        # out[0] = 0.5 x0 + 0.5 mean(class of rows 2, 3): x0's own gradient is 0.5 either way.
        assert leaf.grad[0].tolist() == pytest.approx([0.5] * 6)
        assert (leaf.grad[2:].abs().sum() > 0) == expect_other_grad
        if through:
            assert leaf.grad[2].tolist() == pytest.approx([0.25] * 6)
        assert leaf.grad[1].abs().sum() == 0


def test_memory_of_class_means_hand_computed():
    module = ClassInterference(3, 2, p=1.0, alpha=1.0, means="memory", memory_momentum=0.5, position="before_norm")
    assert set(module.state_dict()) == {"memory", "memory_seen"}
    first = module(torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0, 1]))
    # First sighting: memory rows are the batch means (2,0) and (0,2); each sample lands on the other's.
    assert module.memory.tolist() == [[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]
    assert first.tolist() == [[0.0, 2.0], [0.0, 2.0], [2.0, 0.0]]
    # Class 0 again: memory 0.5 (2,0) + 0.5 (4,0) = (3,0). A batch of one class still has negatives: class 1.
    second = module(torch.tensor([[4.0, 0.0]]), torch.tensor([0]))
    assert module.memory[0].tolist() == [3.0, 0.0] and second.tolist() == [[0.0, 2.0]]
    # Class 2 has never been seen, so only seen classes serve as negatives.
    assert module.memory_seen.tolist() == [True, True, False]


def test_uses_the_global_torch_rng():
    x, y = pk_batch()
    torch.manual_seed(5)
    a = cir(p=0.5, alpha_random=True)(x, y)
    torch.manual_seed(5)
    b = cir(p=0.5, alpha_random=True)(x, y)
    assert torch.equal(a, b)


def test_create_regularizer_from_config_and_bad_values():
    assert create_regularizer(load_config("protonet"), 5, 4) is None
    config = load_config("protonet", {"cir.enabled": True, "cir.p": 0.25, "cir.means": "memory"})
    module = create_regularizer(config, 5, 4)
    assert module.p == 0.25 and module.memory.shape == (5, 4)
    with pytest.raises(FewshotError, match="cir.negative"):
        ClassInterference(2, 2, negative="hardest")
    with pytest.raises(FewshotError, match="cir.p"):
        ClassInterference(2, 2, p=1.5)
