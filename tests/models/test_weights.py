"""Starting weights: torchvision names read from the torch hub cache, the hash in the file name,
what loaded (in the report, the run's log and summary.json), norm mismatches, and one-line errors.

Nothing here downloads: TORCH_HOME points into the test's directory, and torch hub's download
function and urllib are replaced by ones that fail the test.

How the cached file is fabricated: torchvision's file names end in the first 8 hex digits of the
file's sha256 (``resnet18-f37072fd.pth``), which no fabricated file can match. :func:`cache`
saves a state dict with the right keys (a randomly initialised ResNet-18's), names the file
after its own sha256 (``resnet18-<its hash>.pth``) and points the weights' URL (the ``url``
field of torchvision's ``Weights`` record, which ``WeightsEnum.url`` reads) at that name, for the
test only. Everything else goes through torchvision's weights API unchanged. With the real
name and a fabricated file, the hash check fails, as it must.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from tunekit.cli import main
from tunekit.config import ModelConfig, Recipe
from tunekit.detection import build_detector
from tunekit.errors import ConfigError
from tunekit.models import build_model, check_hash, hub_file, weights_report
from tunekit.run import train

R18 = tvm.ResNet18_Weights.IMAGENET1K_V1
NAMED = "torchvision:ResNet18_Weights.IMAGENET1K_V1"


def _no_download(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("something tried to download")


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache in the test's directory; downloading fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    monkeypatch.setattr(urllib.request, "urlopen", _no_download)
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    assert checkpoints == tmp_path / "torch" / "hub" / "checkpoints"
    return checkpoints


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """The state dict of a ResNet-18 (BatchNorm, 1000 classes) with non-trivial BN statistics."""
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model.state_dict()


def cache(state: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch) -> Path:
    """Puts ``state`` in the hub cache under a name whose hash prefix it matches, and points
    ResNet18_Weights.IMAGENET1K_V1's URL at that name (see the module's docstring)."""
    staged = hub_file(R18.url).with_name("staged.pth")
    staged.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, staged)
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()
    url = R18.url.replace("f37072fd", digest[:8])
    assert url != R18.url
    path = hub_file(url)
    staged.rename(path)
    monkeypatch.setattr(R18.value, "url", url)
    return path


def test_a_torchvision_name_loads_from_the_hub_cache(hub, source, monkeypatch) -> None:
    path = cache(source, monkeypatch)
    for member in ("IMAGENET1K_V1", "DEFAULT"):
        cfg = ModelConfig(name="resnet18", weights=f"torchvision:ResNet18_Weights.{member}")
        model = build_model(cfg, num_classes=10)
        own = model.state_dict()
        for k, v in source.items():
            if not k.startswith("fc."):
                assert torch.equal(own[k], v), k  # BN running statistics included
        assert model.fc.out_features == 10  # the head is new
        report = weights_report(model)
        assert report is not None
        assert (report.loaded, report.missing, report.unexpected) == (len(source) - 2, 0, 0)
        assert (report.shape_mismatched, report.head_reset, report.norm_mismatched) == (0, 2, 0)
        assert report.source == NAMED  # DEFAULT is said as what it stands for
        assert report.file == str(path) and report.url == R18.url
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_the_report_counts_missing_unexpected_and_shape_mismatched(hub, source, monkeypatch):
    state = dict(source)
    del state["layer4.1.bn2.running_var"]  # missing
    state["extra.weight"] = torch.zeros(3)  # unexpected
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)  # another shape
    cache(state, monkeypatch)
    cfg = ModelConfig(name="resnet18", weights=NAMED, reset_head=False)
    report = weights_report(build_model(cfg, num_classes=10))
    assert report is not None
    # The head kept (reset_head: false) but 10 classes, not 1000: two more shape mismatches.
    assert report.missing == 1 and report.unexpected == 1 and report.shape_mismatched == 3
    assert report.loaded == len(source) - 4 and report.level == "warning"
    assert report.examples["missing"] == ["layer4.1.bn2.running_var"]
    line = report.describe()
    assert "1 missing, 1 unexpected, 3 shape-mismatched" in line and "\n" not in line


def test_a_named_weight_that_is_not_cached_says_where_to_put_it(hub) -> None:
    with pytest.raises(ConfigError) as err:
        build_model(ModelConfig(name="resnet18", weights=NAMED), num_classes=10)
    message = str(err.value)
    assert str(hub / "resnet18-f37072fd.pth") in message  # the full path
    assert R18.url in message  # where to fetch it on a machine with network
    assert "nothing is downloaded" in message and "\n" not in message
    assert not hub.exists() or not any(hub.iterdir())


def test_a_file_that_does_not_match_the_hash_in_its_name_is_refused(hub, source) -> None:
    hub.mkdir(parents=True)
    torch.save(source, hub / "resnet18-f37072fd.pth")  # the real name, fabricated content
    with pytest.raises(
        ConfigError, match=r"does not match the hash in its name.*name says f37072fd"
    ):
        build_model(ModelConfig(name="resnet18", weights=NAMED), num_classes=10)


def test_check_hash_follows_torch_hub(tmp_path: Path) -> None:
    data = b"weights"
    digest = hashlib.sha256(data).hexdigest()
    for name in (f"net-{digest[:8]}.pth", f"net-{digest[:12]}.pt", "net.pth", "net-.pth"):
        (tmp_path / name).write_bytes(data)
        check_hash(tmp_path / name)  # a matching prefix, or no hash in the name
    (tmp_path / "net-0000abcd.pth").write_bytes(data)
    with pytest.raises(ConfigError, match="sha256 starts with"):
        check_hash(tmp_path / "net-0000abcd.pth")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "torchvision:Resnet18_Weights.IMAGENET1K_V1",
            r"unknown torchvision weights 'Resnet18_Weights' \(did you mean 'ResNet18_Weights'",
        ),
        (
            "torchvision:ResNet18_Weights.IMAGENET1K_V2",
            r"ResNet18_Weights has no weights 'IMAGENET1K_V2' \(did you mean 'IMAGENET1K_V1'.*"
            r"choose one of: IMAGENET1K_V1, DEFAULT",
        ),
        ("torchvision:ResNet18_Weights", r"write torchvision:<WeightsEnum>.<MEMBER>"),
        (
            "torchvision:ResNet50_Weights.IMAGENET1K_V2",
            r"ResNet50_Weights are not resnet18's weights; use torchvision:ResNet18_Weights",
        ),
    ],
)
def test_bad_names_are_one_line_errors_with_close_matches(hub, spec, expected) -> None:
    with pytest.raises(ConfigError, match=expected) as err:
        build_model(ModelConfig(name="resnet18", weights=spec), num_classes=10)
    assert "field 'model.weights'" in str(err.value) and "\n" not in str(err.value)


def test_bn_weights_into_gn_layers_are_an_error_unless_not_strict(hub, source, monkeypatch):
    cache(source, monkeypatch)
    with pytest.raises(
        ConfigError,
        match=r"BatchNorm layers \(with running statistics\) where the model has GroupNorm "
        r"\(20 layers, e.g. 'bn1'\).*model.norm: bn or frozen_bn.*weights_strict: false",
    ):
        build_model(ModelConfig(name="resnet18", norm="gn", weights=NAMED), num_classes=10)
    cfg = ModelConfig(name="resnet18", norm="gn", weights=NAMED, weights_strict=False)
    model = build_model(cfg, num_classes=10)
    report = weights_report(model)
    assert report is not None and report.norm_mismatched == 20 and report.level == "warning"
    assert torch.equal(model.bn1.weight, source["bn1.weight"])  # loaded, as asked
    # frozen_bn takes BN weights and statistics as they are
    frozen = ModelConfig(name="resnet18", norm="frozen_bn", weights=NAMED)
    report = weights_report(build_model(frozen, num_classes=10))
    assert report is not None and report.norm_mismatched == 0 and report.missing == 0


def test_gn_weights_into_bn_layers_are_an_error(tmp_path: Path) -> None:
    gn = build_model(ModelConfig(name="small_cnn", width=8, norm="gn"), 10, 1)
    torch.save(gn.state_dict(), tmp_path / "gn.pt")
    with pytest.raises(ConfigError, match=r"without running statistics.*model.norm: gn"):
        build_model(ModelConfig(name="small_cnn", width=8, weights=str(tmp_path / "gn.pt")), 10, 1)
    # BN weights into a network without norm layers
    bn = build_model(ModelConfig(name="small_cnn", width=8), 10, 1)
    torch.save(bn.state_dict(), tmp_path / "bn.pt")
    none = ModelConfig(name="small_cnn", width=8, norm="none", weights=str(tmp_path / "bn.pt"))
    with pytest.raises(ConfigError, match=r"where the model has no norm \(Identity\)"):
        build_model(none, 10, 1)


def test_a_detector_backbone_takes_named_weights(hub, source, monkeypatch) -> None:
    cache(source, monkeypatch)
    cfg = ModelConfig(
        name="fcos_resnet18_fpn", weights=NAMED, kwargs={"fpn_channels": 16, "head_convs": 1}
    )
    model = build_detector(cfg, 3, image_size=64, max_size=96)
    report = weights_report(model)
    assert report is not None and report.scope == "backbone.body"
    # The body has every tensor of the classifier but its head; FPN and heads are not counted.
    assert (report.loaded, report.missing, report.unexpected) == (len(source) - 2, 0, 2)
    assert torch.equal(
        model.backbone.body.layer1[0].bn1.running_mean, source["layer1.0.bn1.running_mean"]
    )
    with pytest.raises(ConfigError, match=r"where the model has GroupNorm"):
        build_detector(cfg.model_copy(update={"norm": "gn"}), 3, image_size=64, max_size=96)


def _recipe(tmp_path: Path, **model: Any) -> dict[str, Any]:
    return {
        "name": "weights",
        "output_dir": str(tmp_path / "runs"),
        "data": {"name": "digits", "image_size": 8, "train_subset": 64, "val_subset": 32},
        "model": {"name": "small_cnn", "width": 4, **model},
        "train": {"epochs": 1, "batch_size": 32, "device": "cpu"},
        "diagnostics": {"enabled": False},
    }


def test_the_run_logs_and_summarises_what_loaded(tmp_path: Path) -> None:
    start = build_model(ModelConfig(name="small_cnn", width=4), 10, 1)
    torch.save(start.state_dict(), tmp_path / "start.pt")
    recipe = Recipe.model_validate(_recipe(tmp_path, weights=str(tmp_path / "start.pt")))
    summary = train(recipe, out=tmp_path / "run", progress=False)
    n = len(start.state_dict())
    assert summary["weights"]["loaded"] == n - 2 and summary["weights"]["head_reset"] == 2
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["weights"] == summary["weights"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    (event,) = [r for r in records if r.get("event") == "weights"]
    assert event["kind"] == "event" and event["step"] == 0 and event["level"] == "info"
    assert event["loaded"] == n - 2 and f"{n - 2} loaded" in event["message"]
    plain = train(Recipe.model_validate(_recipe(tmp_path)), out=tmp_path / "plain", progress=False)
    assert plain["weights"] is None


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"weights": "torchvision:ResNet18_Weight.DEFAULT"}, "did you mean 'ResNet18_Weights'"),
        ({"weights": NAMED}, "is not in the torch hub cache"),
        ({"norm": "gn", "weights": "BN"}, "BatchNorm layers (with running statistics)"),
    ],
)
def test_bad_weights_exit_2_in_one_line(hub, tmp_path, capsys, model, expected) -> None:
    bn = build_model(ModelConfig(name="small_cnn", width=4), 10, 1)
    torch.save(bn.state_dict(), tmp_path / "bn.pt")
    if model.get("weights") == "BN":
        model = {**model, "weights": str(tmp_path / "bn.pt")}
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(_recipe(tmp_path, **model)))  # JSON is YAML
    code = main(["train", "--recipe", str(path), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and expected in err and "field 'model.weights'" in err
    assert not (tmp_path / "run").exists()  # nothing was trained, nothing is left
