"""Gradient accumulation: k batches of b are one step of k*b, on one process and on two."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tunekit.config import load_recipe
from tunekit.core import load_checkpoint
from tunekit.engine import HookBase, Trainer
from tunekit.run import train
from tunekit.testing import TinyCNN, loader, random_classification

# One SGD step on the same 64 images: 64 at once, or 4 batches of 16. GroupNorm, no dropout and
# no augmentation, so nothing but the batching differs. lr_per_256 scales by the effective batch,
# so both take the LR of 64 images.
COMMON: dict[str, Any] = {
    "seed": 5,
    "data": {
        "image_size": 12,
        "train_subset": 256,
        "val_subset": 32,
        "augment": {"random_crop_padding": 0},
    },
    "model": {"name": "small_cnn", "width": 8, "norm": "gn", "dropout": 0.0},
    "optim": {"lr": 0.8, "lr_per_256": True, "weight_decay": 0.0},
    "schedule": {"name": "constant", "warmup_epochs": 0.0},
    "diagnostics": {"enabled": False},
}


def _recipe(write_recipe: Any, name: str, batch: int, k: int) -> Path:
    section = {"epochs": 1, "batch_size": batch, "accumulate_steps": k, "max_steps_per_epoch": 1}
    return write_recipe(f"{name}.yaml", **COMMON, train={**section, "device": "cpu"})


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 1
    return {k: v for k, v in state["model"].items() if v.is_floating_point()}


def _worst(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).norm() / a[k].norm().clamp_min(1e-12)) for k in a)


def test_four_batches_of_16_are_one_batch_of_64_on_one_and_two_processes(
    write_recipe, tmp_path, cli
):
    big = _recipe(write_recipe, "big", 64, 1)
    acc = _recipe(write_recipe, "acc", 16, 4)
    small = _recipe(write_recipe, "small", 16, 1)
    for recipe, out in ((big, "big"), (acc, "acc"), (small, "small")):
        train(load_recipe(recipe), out=tmp_path / out, progress=False)
    two = cli("train", "--recipe", str(acc), "--out", str(tmp_path / "two"), "--nproc", "2")
    assert two.returncode == 0, two.stderr[-3000:]
    ref = _weights(tmp_path / "big")
    one_process, two_processes = _weights(tmp_path / "acc"), _weights(tmp_path / "two")
    print(
        f"\nlargest relative weight difference to one batch of 64: 4x16 on one process "
        f"{_worst(ref, one_process):.1e}, on two {_worst(ref, two_processes):.1e}"
    )
    assert _worst(ref, one_process) <= 1e-5
    assert _worst(ref, two_processes) <= 1e-5
    # One batch of 16 alone lands elsewhere: the check can fail.
    assert _worst(ref, _weights(tmp_path / "small")) > 1e-3


class _Count(HookBase):
    def __init__(self) -> None:
        self.steps: list[int] = []
        self.lrs: list[float] = []
        self.backwards = 0

    def after_backward(self) -> None:
        self.backwards += 1

    def after_step(self) -> None:
        self.steps.append(self.trainer.step)
        self.lrs.append(self.trainer.lr)


class _Task:
    metric_names = ("val/top1",)

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return batch

    def losses(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"loss": nn.functional.cross_entropy(model(x), y)}

    def evaluate(self, model: nn.Module, loader: Any, dist: Any) -> dict[str, float]:
        return {"val/top1": 0.0}


class _NoSyncModel(TinyCNN):
    """Counts the passes run under ``no_sync``, as DDP would skip their all-reduce."""

    def __init__(self) -> None:
        super().__init__()
        self.unsynced = 0
        self.synced = 0
        self._in_no_sync = False

    @contextmanager
    def no_sync(self) -> Any:
        self._in_no_sync = True
        try:
            yield
        finally:
            self._in_no_sync = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._in_no_sync:
            self.unsynced += 1
        else:
            self.synced += 1
        return super().forward(x)


def test_steps_schedule_hooks_and_no_sync_count_optimizer_steps():
    from tunekit.config import ScheduleConfig
    from tunekit.engine import build_scheduler, make_lr_factor

    model = _NoSyncModel()
    data = loader(random_classification(10 * 8, seed=1), batch_size=8)  # 10 batches
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    cfg = ScheduleConfig(name="cosine", warmup_epochs=0.5)
    # 10 batches in steps of 4: 2 optimizer steps an epoch, the last 2 batches skipped.
    sched = build_scheduler(opt, cfg, steps_per_epoch=2, epochs=2)
    hook = _Count()
    trainer = Trainer(
        model, opt, data, _Task(), epochs=2, scheduler=sched, hooks=[hook], accumulate_steps=4
    )
    assert trainer.steps_per_epoch == 2 and trainer.batches_per_epoch == 8
    trainer.train()
    assert trainer.step == 4 and hook.steps == [1, 2, 3, 4] and hook.backwards == 4
    assert model.unsynced == 3 * 4 and model.synced == 4  # all-reduce on each step's last pass
    factor = make_lr_factor(cfg, 2, 2)
    assert hook.lrs == pytest.approx([factor(s) for s in (1, 2, 3, 4)])
    assert trainer.history[-1]["step"] == 4.0
    # max_steps_per_epoch counts optimizer steps.
    capped = Trainer(model, opt, data, _Task(), epochs=1, accumulate_steps=4, max_steps_per_epoch=1)
    assert capped.steps_per_epoch == 1 and capped.batches_per_epoch == 4


def test_the_step_loss_is_the_mean_of_its_batches():
    torch.manual_seed(0)
    model = TinyCNN()
    data = loader(random_classification(4 * 8, seed=2), batch_size=8)
    seen: list[float] = []

    class Loss(HookBase):
        def after_backward(self) -> None:
            assert self.trainer.loss is not None
            seen.append(float(self.trainer.loss))

    with torch.no_grad():
        expected = sum(float(_Task().losses(model, b)["loss"]) for b in data) / 4
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    Trainer(model, opt, data, _Task(), epochs=1, hooks=[Loss()], accumulate_steps=4).train()
    assert seen == [pytest.approx(expected, rel=1e-6)]


@pytest.mark.parametrize(
    ("train_section", "field", "words"),
    [
        ({"accumulate_steps": 0}, "train.accumulate_steps", "greater than 0"),
        # 256 training images in batches of 64: 4 batches, too few for one step of 8.
        ({"accumulate_steps": 8}, "train.accumulate_steps", "too few for one optimizer step"),
    ],
)
@pytest.mark.parametrize("nproc", [None, "2"])
def test_bad_accumulate_steps_is_one_line(
    write_recipe, tmp_path, capsys, train_section, field, words, nproc
):
    from tunekit.cli import main

    recipe = write_recipe(
        **COMMON, train={"device": "cpu", "epochs": 1, "batch_size": 64, **train_section}
    )
    args = ["train", "--recipe", str(recipe), "--out", str(tmp_path / "run")]
    rc = main(args + (["--nproc", nproc] if nproc else []))
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert field in lines[0] and words in lines[0] and str(recipe) in lines[0]
