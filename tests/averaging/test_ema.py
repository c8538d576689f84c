"""EMA: the update rule, the warmup, BN recalibration, evaluation beside the model, exact resume."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tunekit.averaging import EmaHook, ModelEma, recalibrate_bn
from tunekit.core import load_checkpoint
from tunekit.run import train
from tunekit.testing import TinyMLP, tiny_recipe


def test_decay_warms_up_then_caps() -> None:
    ema = ModelEma(TinyMLP(), decay=0.99, warmup_power=0.75)
    assert ema.get_decay(1) == 0.0  # the first update copies the model
    assert ema.get_decay(2) == pytest.approx(1 - 2**-0.75)
    assert ema.get_decay(10) < ema.get_decay(100) <= 0.99
    assert ema.get_decay(10**6) == 0.99
    assert ModelEma(TinyMLP(), decay=0.9, warmup=False).get_decay(1) == 0.9


def test_update_is_the_exponential_moving_average() -> None:
    torch.manual_seed(0)
    model = TinyMLP()
    ema = ModelEma(model, decay=0.9, warmup=False)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, 4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        assert ema.update(model, step) == 0.9
        for k, v in model.state_dict().items():
            expected[k] = 0.9 * expected[k] + 0.1 * v
    for k, v in ema.module.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=1e-6, atol=1e-6)
    assert not any(p.requires_grad for p in ema.module.parameters())


@pytest.mark.parametrize("buffers", ["ema", "copy"])
def test_buffers_are_averaged_or_copied(buffers: str) -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = ModelEma(model, decay=0.5, warmup=False, buffers=buffers)  # type: ignore[arg-type]
    model.train()
    model(torch.randn(8, 3) + 5)  # moves the running mean
    ema.update(model, 1)
    got, now = ema.module[1].running_mean, model[1].running_mean
    if buffers == "copy":
        assert torch.equal(got, now)
    else:
        torch.testing.assert_close(got, 0.5 * now)  # started at zero
    assert ema.module[1].num_batches_tracked == model[1].num_batches_tracked  # integers are copied


def test_recalibrate_bn_matches_full_batch_statistics() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5))
    data = torch.randn(64, 4) * 3 + 1
    model.eval()
    n = recalibrate_bn(model, data.split(16))
    assert n == 4 and not model.training and not model[1].training  # modes are put back
    hidden = model[0](data).detach()
    torch.testing.assert_close(model[1].running_mean, hidden.mean(0), rtol=1e-5, atol=1e-5)
    # torch's cumulative average of per-batch unbiased variances (as update_bn computes)
    var = torch.stack([h.var(0, unbiased=True) for h in hidden.split(16)]).mean(0)
    torch.testing.assert_close(model[1].running_var, var, rtol=1e-5, atol=1e-5)
    assert model[1].momentum == 0.1  # put back


def test_ema_is_evaluated_beside_the_model_and_leaves_training_untouched(tmp_path) -> None:
    base = tiny_recipe(tmp_path, train={"epochs": 2})
    with_ema = tiny_recipe(tmp_path, train={"epochs": 2}, averaging={"ema": {"decay": 0.9}})
    plain = train(base, out=tmp_path / "plain", progress=False)
    averaged = train(with_ema, out=tmp_path / "ema", progress=False)
    final = averaged["final"]
    for key in ("ema/val/top1", "ema/val/loss", "val/top1"):
        assert key in final
    assert 0.0 <= final["ema/val/top1"] <= 1.0
    # The EMA hook (with BN recalibration over randomly jittered batches) must not
    # change the run it watches: same batches, same draws, same weights.
    a = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "ema" / "checkpoints" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert plain["final"]["val/top1"] == final["val/top1"]


def test_ema_resumes_bit_for_bit(tmp_path) -> None:
    recipe = tiny_recipe(
        tmp_path,
        train={"epochs": 3, "keep_last": 3},
        averaging={"ema": {"decay": 0.9, "recalibrate_batches": 2}},
    )
    train(recipe, out=tmp_path / "ref", progress=False)
    ref = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")
    # Resume a second run from the first one's checkpoint after epoch 2.
    resumed_from = tmp_path / "ref" / "checkpoints" / "epoch_002.pt"
    mid = load_checkpoint(resumed_from)
    assert mid["epoch"] == 2
    train(recipe, out=tmp_path / "resumed", resume=str(resumed_from), progress=False)
    got = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    ema_ref, ema_got = ref["hooks"]["EmaHook"]["model"], got["hooks"]["EmaHook"]["model"]
    assert ema_ref.keys() == ema_got.keys()
    for k in ema_ref:
        assert torch.equal(ema_ref[k], ema_got[k]), f"EMA {k} differs after resume"
        assert torch.equal(ref["model"][k], got["model"][k]), f"model {k} differs after resume"
    # ...and the average did move in the resumed epoch (the test can fail).
    moved = [
        k
        for k in ema_ref
        if ema_ref[k].is_floating_point()
        and not torch.equal(ema_ref[k], mid["hooks"]["EmaHook"]["model"][k])
    ]
    assert moved
    assert ref["history"][-1]["ema/val/top1"] == got["history"][-1]["ema/val/top1"]


def test_hook_without_build_trainer_copies_the_model_itself() -> None:
    from tunekit.engine import Trainer
    from tunekit.tasks import ClassificationTask
    from tunekit.testing import loader, random_classification

    torch.manual_seed(0)
    model = TinyMLP(64, 4)
    data = loader(random_classification(64, 4), batch_size=16)
    hook = EmaHook(decay=0.5, warmup=False, buffers="copy")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(
        model, opt, data, ClassificationTask(4), epochs=1, val_loader=data, hooks=[hook]
    )
    start = copy.deepcopy(model.state_dict())
    trainer.train()
    assert hook.ema is not None
    assert "ema/val/top1" in trainer.history[-1] and "ema/val/top1" in trainer.last_eval
    w = hook.ema.module.state_dict()["fc1.weight"]
    assert not torch.equal(w, start["fc1.weight"]) and not torch.equal(w, model.fc1.weight)


def test_the_average_does_not_carry_the_models_hooks() -> None:
    model = TinyMLP()
    seen: list[str] = []
    model.fc1.register_forward_hook(lambda m, i, o: seen.append("hook"))
    ema = ModelEma(model)
    ema(torch.randn(2, 64))
    assert seen == []
    model(torch.randn(2, 64))
    assert seen == ["hook"]
