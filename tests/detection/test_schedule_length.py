"""schedule.length_multiplier: the 1x/2x/6x of detection schedules stretch epochs and milestones."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunekit.config import load_recipe
from tunekit.errors import ConfigError
from tunekit.run import build_trainer, schedule_length

REPO = Path(__file__).resolve().parents[2]


def test_multiplier_stretches_epochs_and_milestones_not_warmup(tmp_path: Path) -> None:
    recipe = load_recipe(
        REPO / "recipes" / "digits.yaml",
        [
            "schedule.name=step",
            "schedule.milestones=[2, 3]",
            "schedule.warmup_epochs=0.5",
            "schedule.length_multiplier=2",
            "train.epochs=4",
        ],
    )
    epochs, schedule = schedule_length(recipe)
    assert epochs == 8 and schedule.milestones == [4, 6] and schedule.warmup_epochs == 0.5
    trainer, comp = build_trainer(recipe, tmp_path / "run", progress=False)
    assert trainer.epochs == 8
    steps = len(comp.train_loader)
    assert trainer.scheduler is not None
    factor = trainer.scheduler.lr_lambdas[0]  # type: ignore[attr-defined]
    assert factor(int(3.9 * steps)) == pytest.approx(1.0)  # the 1x milestone at epoch 2 moved to 4
    assert factor(int(4.1 * steps)) == pytest.approx(0.1)
    assert factor(int(6.1 * steps)) == pytest.approx(0.01)
    assert schedule_length(load_recipe(REPO / "recipes" / "digits.yaml"))[0] == 10


def test_multiplier_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"schedule.length_multiplier.*value 0"):
        load_recipe(REPO / "recipes" / "digits.yaml", ["schedule.length_multiplier=0"])
