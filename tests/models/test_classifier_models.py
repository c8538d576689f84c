"""Model table, norm options, local starting weights, freezing and head replacement."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from tunekit.config import ModelConfig
from tunekit.core import save_atomic
from tunekit.errors import ConfigError
from tunekit.models import build_model, convert_norm, gn_groups


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize(
    ("norm", "kind"),
    [
        ("bn", nn.BatchNorm2d),
        ("gn", nn.GroupNorm),
        ("syncbn", nn.SyncBatchNorm),
        ("frozen_bn", FrozenBatchNorm2d),
    ],
)
def test_resnet18_norm_options(norm, kind):
    model = build_model(ModelConfig(name="resnet18", norm=norm), num_classes=7, in_channels=3)
    assert _count(model, kind) == 20  # every norm layer of a ResNet-18 is of that kind
    assert model.fc.out_features == 7
    if norm != "syncbn":  # SyncBN runs only inside a process group
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_one_channel_input_and_gn_group_count():
    model = build_model(ModelConfig(name="resnet18", norm="gn"), num_classes=10, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert gn_groups(64) == 32 and gn_groups(24) == 24 and gn_groups(48) == 24


def test_convert_norm_frozen_keeps_statistics():
    bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    bn[1].running_mean.fill_(0.5)
    frozen = convert_norm(bn, "frozen_bn")
    assert isinstance(frozen[1], FrozenBatchNorm2d)
    assert torch.equal(frozen[1].running_mean, torch.full((4,), 0.5))


def test_transfer_learning_table(tmp_path):
    """Linear classifier on top / fine-tune a few layers / fine-tune all: three settings."""
    source = build_model(ModelConfig(name="small_cnn", width=8), num_classes=10, in_channels=1)
    ckpt = tmp_path / "source.pt"
    save_atomic({"format": "tunekit-checkpoint-v1", "model": source.state_dict()}, ckpt)

    def trainable(freeze_to):
        cfg = ModelConfig(name="small_cnn", width=8, weights=str(ckpt), freeze_to=freeze_to)
        m = build_model(cfg, num_classes=3, in_channels=1)
        # the backbone came from the checkpoint, the 3-way head is new
        assert torch.equal(m.layer1.conv1.weight, source.layer1.conv1.weight)
        assert m.fc.out_features == 3
        return {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad}

    assert trainable("layer3") == {"fc"}  # linear classifier on top
    assert trainable("layer1") == {"layer2", "layer3", "fc"}  # fine-tune a few layers
    assert trainable(None) == {"stem", "layer1", "layer2", "layer3", "fc"}  # fine-tune all


def test_weights_keep_the_head_when_asked(tmp_path):
    source = build_model(ModelConfig(name="small_cnn", width=8), num_classes=10, in_channels=1)
    path = tmp_path / "plain_state_dict.pt"
    torch.save(source.state_dict(), path)
    m = build_model(
        ModelConfig(name="small_cnn", width=8, weights=str(path), reset_head=False), 10, 1
    )
    assert torch.equal(m.fc.weight, source.fc.weight)


def test_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(ConfigError, match=r"no tensor .* matches the model"):
        build_model(ModelConfig(name="small_cnn", weights=str(path)), 10, 1)


def test_drop_path_only_where_the_model_has_it():
    with pytest.raises(ConfigError, match="resnet18 has no stochastic depth"):
        build_model(ModelConfig(name="resnet18", drop_path=0.1), 10)
    m = build_model(ModelConfig(name="small_cnn", drop_path=0.1, dropout=0.2), 10, 1)
    assert m.layer1.drop_path.p == 0.1 and m.dropout.p == 0.2


@pytest.mark.parametrize(("name", "in_channels"), [("small_cnn", 1), ("mobilenet_v3_small", 3)])
def test_syncbn_replaces_every_batchnorm_and_acts_as_bn_in_one_process(name, in_channels):
    # small_cnn builds its norm layers by name; MobileNet is converted after it is built.
    torch.manual_seed(0)
    bn = build_model(ModelConfig(name=name, norm="bn"), num_classes=5, in_channels=in_channels)
    sync = build_model(
        ModelConfig(name=name, norm="syncbn"), num_classes=5, in_channels=in_channels
    )
    n_bn = _count(bn, nn.BatchNorm2d)
    assert n_bn > 0 and _count(sync, nn.SyncBatchNorm) == n_bn
    assert _count(sync, nn.BatchNorm2d) == 0
    # Outside a process group there is nothing to synchronise: SyncBN normalises by the
    # batch's own statistics, as BN does (across GPUs it needs DDP; see test_ddp).
    sync.load_state_dict(bn.state_dict())
    x = torch.randn(4, in_channels, 32, 32)
    bn.train(), sync.train()
    outputs = []
    for model in (bn, sync):
        torch.manual_seed(1)  # the same dropout masks
        outputs.append(model(x))
    torch.testing.assert_close(outputs[1], outputs[0])
    for a, b in zip(bn.modules(), sync.modules()):
        if isinstance(a, nn.BatchNorm2d):
            assert isinstance(b, nn.SyncBatchNorm)
            torch.testing.assert_close(b.running_mean, a.running_mean)
