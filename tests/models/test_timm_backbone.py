"""The timm backbone: weight files (safetensors, state dicts, hub-style checkpoints) round trip, the model's
input settings applied numerically, refusals, the offline hub, training a few steps. Small random-weight
timm test models only (test_resnet: 0.37M parameters); no test needs the network."""
from __future__ import annotations

import json
import sys

import pytest
import torch
import torch.nn.functional as F

timm = pytest.importorskip("timm", reason="timm is a dev dependency (pip install -e '.[dev]')")
from safetensors.torch import save_file  # noqa: E402  (timm depends on safetensors)

from fewshot.errors import FewshotError  # noqa: E402
from fewshot.models import create_backbone, list_backbones  # noqa: E402
from fewshot.models.preprocess import ImageInput  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def grey_batch(n=3, size=28, seed=0):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_registered_with_the_models_own_input_settings():
    assert "timm" in list_backbones()
    backbone = create_backbone("timm", in_channels=1, model="test_resnet").eval()
    # timm's pretrained config of test_resnet.r160_in1k: 160x160, bilinear, mean = std = 0.5; pooled 96-d.
    assert backbone.data_config == {"input_size": [3, 160, 160], "mean": [0.5] * 3, "std": [0.5] * 3,
                                    "interpolation": "bilinear"}
    assert backbone.out_dim(28, 28) == 96
    with torch.no_grad():
        assert backbone(grey_batch()).shape == (3, 96)
    small = create_backbone("timm", in_channels=1, model="test_resnet", input_size=32)
    assert small.input.size == (32, 32)
    # A ViT is built for its size: backbone.input_size is passed on as img_size (test_vit is fixed at 160).
    vit = create_backbone("timm", in_channels=1, model="test_vit", input_size=32).eval()
    assert vit.net.patch_embed.img_size == (32, 32) and vit.data_config["interpolation"] == "bicubic"
    with torch.no_grad():
        assert vit(grey_batch()).shape == (3, 64)


def test_preprocessing_repeats_grey_resizes_and_normalises():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    layer = ImageInput(1, 3, (40, 40), mean, std, "bilinear")
    # A constant grey image stays constant through any resize: (v - mean_c) / std_c, by hand.
    out = layer(torch.full((1, 1, 28, 28), 0.6))
    assert out.shape == (1, 3, 40, 40)
    for c in range(3):
        assert torch.allclose(out[0, c], torch.full((40, 40), (0.6 - mean[c]) / std[c]), atol=1e-6)
    # Any image: what torchvision's resize (antialiased, as for tensors) and normalize give.
    from torchvision.transforms.v2 import functional as TF

    x = grey_batch(2)
    reference = TF.normalize(TF.resize(x.expand(-1, 3, -1, -1), [40, 40], antialias=True), list(mean), list(std))
    assert torch.allclose(layer(x), reference, atol=1e-5)
    # Downsizing antialiases too; bicubic is clamped to [0, 1] first, like PIL's uint8 resize.
    down = ImageInput(3, 3, (12, 12), (0.0,) * 3, (1.0,) * 3, "bicubic")
    rgb = torch.rand(2, 3, 28, 28)
    expected = TF.resize(rgb, [12, 12], interpolation=TF.InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)
    assert torch.allclose(down(rgb), expected, atol=1e-5)
    with pytest.raises(FewshotError, match="the model takes 3-channel images; the store's have 2"):
        ImageInput(2, 3, (8, 8), mean, std)


def test_the_backbone_embeds_the_preprocessed_images():
    backbone = create_backbone("timm", in_channels=1, model="test_resnet", input_size=48).eval()
    x = grey_batch()
    by_hand = (F.interpolate(x.expand(-1, 3, -1, -1), size=(48, 48), mode="bilinear", align_corners=False,
                             antialias=True) - 0.5) / 0.5
    with torch.no_grad():
        assert torch.allclose(backbone(x), backbone.net(by_hand), atol=1e-6)


def test_weights_round_trip_through_safetensors_and_state_dicts(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=0).eval()
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    torch.save(source.state_dict(), tmp_path / "w.pt")
    # A training checkpoint that wraps the weights, saved from a DDP model ("module." prefixes).
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}},
               tmp_path / "ckpt.pth")
    x = grey_batch()
    with torch.no_grad():
        expected = source(create_backbone("timm", in_channels=1, model="test_resnet").input(x))
        for name in ("w.safetensors", "w.pt", "ckpt.pth"):
            torch.manual_seed(99)  # a different random start: only the file can make them equal
            loaded = create_backbone("timm", in_channels=1, model="test_resnet", weights=str(tmp_path / name))
            assert torch.equal(loaded.eval()(x), expected), name


def test_hub_style_weights_with_a_classifier_load_and_give_its_pooled_features(tmp_path):
    torch.manual_seed(2)
    classifier = timm.create_model("test_resnet", num_classes=10).eval()  # like the hub's: fc.weight, fc.bias
    save_file(classifier.state_dict(), tmp_path / "hub.safetensors")
    backbone = create_backbone("timm", in_channels=1, model="test_resnet", weights=str(tmp_path / "hub.safetensors"))
    x = grey_batch()
    with torch.no_grad():
        pooled = classifier.forward_head(classifier.forward_features(backbone.input(x)), pre_logits=True)
        assert torch.equal(backbone.eval()(x), pooled)


def test_bad_weight_files_and_names_are_one_line_errors(tmp_path):
    save_file(timm.create_model("test_vit", num_classes=0).state_dict(), tmp_path / "vit.safetensors")
    with pytest.raises(FewshotError, match=r"does not fit timm's test_resnet \(missing \d+ \(e\.g\. 'conv1"):
        create_backbone("timm", model="test_resnet", weights=str(tmp_path / "vit.safetensors"))
    state = timm.create_model("test_resnet", num_classes=0).state_dict()
    state["fc.weight"] = torch.zeros(5, 96)
    state.pop("bn1.weight")  # a missing weight is never left at random, even beside a classifier
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(FewshotError, match=r"missing 1 \(e\.g\. 'bn1\.weight'\)"):
        create_backbone("timm", model="test_resnet", weights=str(tmp_path / "partial.pt"))
    torch.save({"weights": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")  # a pickled module: code, refused
    with pytest.raises(FewshotError, match=r"module\.pt is not a safetensors file or a torch state dict"):
        create_backbone("timm", model="test_resnet", weights=str(tmp_path / "module.pt"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(FewshotError, match="junk.safetensors is not a safetensors file"):
        create_backbone("timm", model="test_resnet", weights=str(tmp_path / "junk.safetensors"))
    with pytest.raises(FewshotError, match="absent.pt does not exist"):
        create_backbone("timm", model="test_resnet", weights=str(tmp_path / "absent.pt"))
    with pytest.raises(FewshotError, match=r"'test_resnett' is not a timm model \(did you mean 'test_resnet'\?\)"):
        create_backbone("timm", model="test_resnett")
    with pytest.raises(FewshotError, match="needs backbone.model=NAME"):
        create_backbone("timm")
    with pytest.raises(FewshotError, match="not both"):
        create_backbone("timm", model="test_resnet", weights="w.pt", pretrained=True)


def test_without_timm_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    with pytest.raises(FewshotError, match=r"needs the timm package: pip install 'fewshot\[timm\]'"):
        create_backbone("timm", model="test_resnet")


def test_pretrained_without_the_hub_is_a_one_line_error_naming_the_fix(tiny_store, tmp_path, monkeypatch, capsys):
    import socket

    from huggingface_hub import constants

    from fewshot.cli import main
    from fewshot.data.store import Store
    from fewshot.episodes.files import make_episode_file

    make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 4, seed=0).save(tmp_path / "ep.npz")
    # Offline with an empty cache, whatever this machine has: what HF_HUB_OFFLINE=1 and a fresh HF_HOME set
    # (the hub client reads them when it is imported).
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["eval", "--backbone", "timm:test_resnet", "--pretrained", "--data", str(tiny_store),
                 "--episodes", str(tmp_path / "ep.npz"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (
        "fewshot: error: backbone.pretrained=true could not get the weights of test_resnet from the Hugging Face "
        "hub (HF_HUB_OFFLINE is set and timm/test_resnet.r160_in1k is not in the local cache); download them where "
        "the hub is reachable (the hub's model.safetensors, or torch.save(timm.create_model('test_resnet', "
        "pretrained=True).state_dict(), FILE)) and pass backbone.weights=FILE instead\n")

    # Online settings but no network: a failed name lookup says so at once (not after a minute of retries).
    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    host = constants.ENDPOINT.split("//")[-1].split("/")[0].split(":")[0]
    with pytest.raises(FewshotError, match=rf"\({host} cannot be reached from here\); download them"):
        create_backbone("timm", model="test_resnet", pretrained=True)


def test_a_timm_backbone_trains_and_its_run_evaluates_after_the_weight_file_is_gone(tiny_store, tiny_train_overrides,
                                                                                  tmp_path):
    from fewshot.config import load_config
    from fewshot.episodes.files import make_episode_file
    from fewshot.data.store import Store
    from fewshot.evaluate.run import evaluate_run
    from fewshot.runs import load_run
    from fewshot.train.loop import train

    torch.manual_seed(3)
    start = timm.create_model("test_resnet", num_classes=0).state_dict()
    save_file(start, tmp_path / "start.safetensors")
    overrides = {**tiny_train_overrides, "backbone.name": "timm", "backbone.model": "test_resnet",
                 "backbone.input_size": 32, "backbone.weights": str(tmp_path / "start.safetensors"),
                 "train.val_every": 0}
    config = load_config("protonet", overrides)
    summary = train(config, tiny_store, tmp_path / "run", progress=False, device_name="cpu")
    assert summary["steps"] == 4
    losses = [float(row.split(",")[1]) for row in (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]
              if row.split(",")[1]]
    assert len(losses) == 4 and all(map(torch.isfinite, torch.tensor(losses)))
    (tmp_path / "start.safetensors").unlink()  # the checkpoint holds every weight
    from fewshot.models.initial_weights import restoring_checkpoint

    with restoring_checkpoint():
        learner, saved, _ = load_run(tmp_path / "run", "last")
    assert saved["backbone"]["model"] == "test_resnet"
    # Fine-tuned from the file: 4 Adam steps of lr 1e-3 move each weight by at most about 4e-3 (a random
    # start would differ by the init's scale, about 0.1 and more).
    moved = max((learner.backbone.net.state_dict()[k] - v).abs().max().item() for k, v in start.items()
                if v.is_floating_point() and "running" not in k)
    assert 0 < moved < 0.006
    episodes = make_episode_file(Store(tiny_store).split("test"), 3, 1, 2, 4, seed=0)
    record, = evaluate_run(tmp_path / "run", [episodes], tiny_store, "cpu", checkpoint="last")
    assert record["n_episodes"] == 4 and record["provenance"]["config"]["backbone"]["name"] == "timm"


def test_old_configs_keep_their_digest():
    """The timm keys at their defaults are left out of the digest: runs made before them are still found."""
    from fewshot.config import config_digest, load_config

    config = load_config("protonet")
    old = json.loads(json.dumps(config))
    for key in ("model", "weights", "pretrained", "input_size"):
        del old["backbone"][key]
    assert config_digest(old) == config_digest(config)
    assert config_digest(load_config("protonet", {"backbone.input_size": 32})) != config_digest(config)
