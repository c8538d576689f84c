"""The transfer-learning table as shipped recipes: each validates, builds on a source checkpoint
made here, freezes what its row of the table freezes, and takes a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunekit.config import load_recipe
from tunekit.models import frozen_modules, weights_report
from tunekit.run import build_trainer, train

REPO = Path(__file__).resolve().parents[2]
SOURCE_CKPT = "runs/transfer_source/checkpoints/best.pt"
STAGES = ["stem", "layer1", "layer2", "layer3"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source recipe, trained for two steps: a real checkpoint where its command writes one."""
    tmp = tmp_path_factory.mktemp("source")
    path = REPO / "recipes" / "transfer_source.yaml"
    assert f"--out {Path(SOURCE_CKPT).parents[1]}" in path.read_text()  # the documented command
    recipe = load_recipe(path, ["train.epochs=1", "train.max_steps_per_epoch=2"])
    assert recipe.data.classes == [0, 1, 2, 3, 4]
    train(recipe, out=tmp / "run", progress=False)
    return tmp / "run" / "checkpoints" / "best.pt"


@pytest.mark.parametrize(
    ("name", "phases"),
    [
        ("transfer_linear", []),
        ("transfer_partial", [("probe", STAGES), ("finetune", ["stem", "layer1"])]),
        ("transfer_full", [("probe", STAGES), ("finetune", [])]),
    ],
)
def test_transfer_recipe_builds_on_its_source_and_steps(
    source: Path, tmp_path: Path, name: str, phases: list[tuple[str, list[str]]]
) -> None:
    path = REPO / "recipes" / f"{name}.yaml"
    assert load_recipe(path).model.weights == SOURCE_CKPT
    recipe = load_recipe(path, [f"model.weights={source}", f"output_dir={tmp_path}"])
    assert set(recipe.data.classes or []) == {5, 6, 7, 8, 9}  # held apart from the source's
    assert [p.name for p in recipe.phases] == [p for p, _ in phases]
    for i, (_, frozen) in enumerate(phases):  # what each phase freezes: its row of the table
        model_cfg = recipe.phase_recipe(i).model
        assert (model_cfg.freeze_to or None) == (frozen[-1] if frozen else None)
    trainer, comp = build_trainer(recipe, tmp_path / "run", progress=False)
    assert comp.bundle.num_classes == 5
    report = weights_report(trainer.module)
    assert report is not None and report.loaded > 0
    # Every recipe starts as a linear probe: the backbone frozen, the new head alone training.
    assert frozen_modules(trainer.module) == STAGES
    head = {id(p) for p in trainer.module.fc.parameters()}
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == head
    before = trainer.module.fc.weight.detach().clone()
    for _, batch in zip(range(2), trainer.train_loader):
        trainer.batch = comp.task.to_device(batch, trainer.device)
        trainer.run_step()
    assert trainer.step == 2 and not torch.equal(before, trainer.module.fc.weight)


def test_full_fine_tuning_gives_the_pretrained_stages_a_decayed_lr(source: Path, tmp_path) -> None:
    recipe = load_recipe(
        REPO / "recipes" / "transfer_full.yaml",
        [f"model.weights={source}", f"output_dir={tmp_path}"],
    )
    # Built as a run resumed at the fine-tuning's first epoch: every parameter trains, the
    # head at the phase's LR and each stage before it at half the LR of the next.
    start = recipe.phases[0].epochs
    trainer, _ = build_trainer(recipe, tmp_path / "run", progress=False, start_epoch=start)
    assert frozen_modules(trainer.module) == []
    names = {id(p): n for n, p in trainer.module.named_parameters()}
    mults = {
        names[id(p)].split(".")[0]: g["lr_mult"]
        for g in trainer.optimizer.param_groups
        for p in g["params"]
    }
    assert mults == {"fc": 1.0, "layer3": 0.5, "layer2": 0.25, "layer1": 0.125, "stem": 0.0625}
