"""The metrics store: producers put values, writers subscribe, side models keep one name."""

from __future__ import annotations

from typing import Any

import torch

from tunekit.engine import HookBase, MetricsStore, Trainer
from tunekit.tasks import ClassificationTask
from tunekit.testing import TinyMLP, loader, random_classification


def test_a_step_record_holds_what_was_put_and_reaches_every_writer() -> None:
    store = MetricsStore(flush_every=2)
    seen: list[dict[str, Any]] = []
    batches: list[list[dict[str, Any]]] = []
    store.subscribe(seen.append)
    store.subscribe_batches(batches.append)
    store.start(0, steps_per_epoch=4)
    for step in (1, 2, 3):
        store.begin_step(step)
        store.put("train/step_loss", 1.0 / step)
        if step == 2:
            store.event("loss_spike", "a spike")
        store.end_step(step, lambda: 0.1)
    assert [r["kind"] for r in seen] == ["step", "event", "step", "step"]
    assert seen[1]["step"] == 2 and seen[1]["epoch"] == 0.5
    assert seen[2] == {"kind": "step", "step": 2, "epoch": 0.5, "lr": 0.1, "train/step_loss": 0.5}
    assert [len(b) for b in batches] == [3]  # flushed at the second step record
    store.end_train()
    assert [len(b) for b in batches] == [3, 1]
    assert store.latest["train/step_loss"] == 1.0 / 3


def test_side_models_are_named_as_in_metrics_jsonl_and_last_eval_survives_a_resume() -> None:
    store = MetricsStore()
    store.begin_epoch_record({"epoch": 1.0, "step": 4.0}, {"val/top1": 0.5})
    store.put_eval({"val/top1": 0.6}, model="ema")
    store.put_epoch("swa/n_averaged", 2.0)
    assert store.epoch == {
        "epoch": 1.0,
        "step": 4.0,
        "val/top1": 0.5,
        "ema/val/top1": 0.6,
        "swa/n_averaged": 2.0,
    }
    assert store.last_eval == {"val/top1": 0.5, "ema/val/top1": 0.6} and store.evaluated
    store.begin_epoch_record({"epoch": 2.0, "step": 8.0}, None)  # not evaluated
    assert not store.evaluated and store.last_eval["ema/val/top1"] == 0.6
    resumed = MetricsStore()
    resumed.load_history(store.history[:1])
    assert resumed.last_eval == {"val/top1": 0.5, "ema/val/top1": 0.6}


def test_hooks_put_before_the_record_closes_and_writers_read_it_after() -> None:
    closed: list[dict[str, Any]] = []

    class Producer(HookBase):
        priority = 20

        def after_step(self) -> None:
            self.metrics.put("custom", float(self.trainer.step))

        def after_epoch(self) -> None:
            self.metrics.put_epoch("custom/epoch", 1.0)

    class Writer(HookBase):
        priority = 80

        def before_train(self) -> None:
            self.metrics.subscribe(closed.append)

        def after_step(self) -> None:  # the step's record is already closed
            assert self.metrics.latest["custom"] == self.trainer.step

    model = TinyMLP()
    trainer = Trainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        loader(random_classification(n=32), batch_size=16),
        ClassificationTask(4),
        epochs=1,
        hooks=[Writer(), Producer()],
    )
    trainer.train()
    assert [(r["kind"], r.get("step")) for r in closed] == [
        ("step", 1),
        ("step", 2),
        ("epoch", 2.0),
    ]
    assert closed[-1]["custom/epoch"] == 1.0 and trainer.history[-1]["custom/epoch"] == 1.0


def test_a_metric_has_one_name_the_records_and_older_spelling_read_as_it() -> None:
    from tunekit.config import Recipe, metric_key
    from tunekit.run import check_metric

    for key in ("val/top1", "ema/val/top1", "snapshots/val/loss", "tta/val/top5", "val_/x"):
        assert metric_key(key) == key
    assert metric_key("val_ema/top1") == "ema/val/top1"
    recipe = Recipe.model_validate(
        {"train": {"metric": "val_ema/top1"}, "averaging": {"ema": {"decay": 0.9}}}
    )
    assert recipe.train.metric == "ema/val/top1"
    check_metric(recipe)  # the EMA model's top-1 is a key of the epoch record
