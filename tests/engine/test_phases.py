"""Phases of one run (a linear probe, then fine-tuning): what trains and at which LR in each
phase, one record and checkpoint stream, and a resume that crosses a phase boundary (or starts
exactly at one) ending bit for bit where the uninterrupted run ends."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from tunekit.cli import main
from tunekit.config import Recipe, load_recipe
from tunekit.core import load_checkpoint
from tunekit.engine import HookBase, make_lr_factor
from tunekit.models import frozen_modules
from tunekit.run import build_trainer, train

# 96 digits in batches of 32: 3 steps an epoch; a probe of 2 epochs, then 2 of fine-tuning.
STEPS = 3
BASE: dict[str, Any] = {
    "name": "phases",
    "data": {"name": "digits", "image_size": 8, "train_subset": 96, "val_subset": 32},
    # Dropout draws random numbers every step: a resume that restored the RNGs wrongly shows.
    "model": {"name": "small_cnn", "width": 4, "dropout": 0.2},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
    "schedule": {"name": "cosine", "warmup_epochs": 0.5},
    "train": {"batch_size": 32, "device": "cpu", "keep_last": 4},
    "diagnostics": {"enabled": False},
    "phases": [
        {"name": "probe", "epochs": 2, "set": {"model.freeze_to": "layer3", "optim.lr": 0.1}},
        {
            "name": "finetune",
            "epochs": 2,
            "set": {"optim.lr": 0.01, "schedule.warmup_epochs": 1.0, "optim.grad_clip": 1.0},
        },
    ],
}
STAGES = ["stem", "layer1", "layer2", "layer3"]


def _recipe(tmp_path: Path, **sections: Any) -> Recipe:
    data = copy.deepcopy(BASE)
    data["output_dir"] = str(tmp_path / "runs")
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    return Recipe.model_validate(data)


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    """Every tensor equal (torch.equal), every other value equal, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _without_times(state: dict[str, Any]) -> dict[str, Any]:
    out = dict(state)
    out["history"] = [{k: v for k, v in r.items() if k != "time/epoch_s"} for r in state["history"]]
    return out


def test_resume_in_a_phase_or_at_its_boundary_ends_bit_identical(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    train(recipe, out=tmp_path / "whole", progress=False)
    ckpts = tmp_path / "whole" / "checkpoints"
    reference = _without_times(load_checkpoint(ckpts / "last.pt"))
    assert reference["step"] == 4 * STEPS
    # Each epoch's checkpoint holds the optimizer of the phase its epoch falls in: epoch 2
    # ends the probe, and its checkpoint already holds the fine-tuning's fresh optimizer.
    for epoch, phase in ((1, 0), (2, 1), (3, 1)):
        state = load_checkpoint(ckpts / f"epoch_{epoch:03d}.pt")
        assert state["hooks"]["PhaseHook"]["index"] == phase
        in_optimizer = sum(len(g["params"]) for g in state["optimizer"]["param_groups"])
        assert in_optimizer == (2 if phase == 0 else 29)  # the head's 2 tensors, or all 29
    # Resumed in the probe (it crosses the boundary after the resume), exactly at the
    # boundary, and in the fine-tuning: every tensor (weights, BN statistics, momentum,
    # schedule, RNGs) ends as in the uninterrupted run.
    for epoch in (1, 2, 3):
        out = tmp_path / f"from_{epoch}"
        train(recipe, out=out, resume=str(ckpts / f"epoch_{epoch:03d}.pt"), progress=False)
        state = _without_times(load_checkpoint(out / "checkpoints" / "last.pt"))
        _assert_same(reference, state, f"resumed from epoch {epoch}")


class _Watch(HookBase):
    """What trains and at which LR, step by step."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []

    def before_epoch(self) -> None:
        t = self.trainer
        self.epochs.append(
            {
                "frozen": frozen_modules(t.module),
                "in_optimizer": {id(p) for g in t.optimizer.param_groups for p in g["params"]},
                "optimizer": t.optimizer,
                "optimizer_state": len(t.optimizer.state),
                "grad_clip": t.grad_clip,
            }
        )

    def before_step(self) -> None:
        t = self.trainer
        m = t.module
        self.steps.append(
            {
                "lrs": {g["lr"] for g in t.optimizer.param_groups},
                "stages_training": [getattr(m, s).training for s in STAGES],
                "requires_grad": [
                    p.requires_grad for s in STAGES for p in getattr(m, s).parameters()
                ],
            }
        )


def test_each_phase_trains_its_own_parameters_at_its_own_schedule(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    watch = _Watch()
    trainer, _ = build_trainer(recipe, tmp_path / "run", hooks=[watch], progress=False)
    model = trainer.module
    trainer.train()
    head = {id(p) for p in model.fc.parameters()}
    everything = {id(p) for p in model.parameters()}
    probe, _, finetune, _ = watch.epochs
    # 1. The probe: the stages frozen (in eval mode, no gradients), only the head in the optimizer.
    assert probe["frozen"] == STAGES and probe["in_optimizer"] == head
    for s in watch.steps[: 2 * STEPS]:
        assert s["stages_training"] == [False] * 4 and not any(s["requires_grad"])
    # 2. The fine-tuning: nothing frozen, every parameter in a new optimizer with no momentum
    #    carried over from the probe, in training mode, with the phase's gradient clipping.
    assert finetune["frozen"] == [] and finetune["in_optimizer"] == everything
    assert finetune["optimizer"] is not probe["optimizer"] and finetune["optimizer_state"] == 0
    assert (probe["grad_clip"], finetune["grad_clip"]) == (None, 1.0)
    for s in watch.steps[2 * STEPS :]:
        assert s["stages_training"] == [True] * 4 and all(s["requires_grad"])
    # 3. Each phase's LR follows its own schedule, from its own step 0 (each has its warmup).
    for phase, start, peak in ((0, 0, 0.1), (1, 2 * STEPS, 0.01)):
        factor = make_lr_factor(recipe.phase_recipe(phase).schedule, STEPS, 2)
        for k in range(2 * STEPS):
            (lr,) = watch.steps[start + k]["lrs"]  # one LR for every group (decayed or not)
            assert lr == pytest.approx(peak * factor(k), rel=1e-12), (phase, k)
    # Both start at the bottom of their warmup.
    assert [min(watch.steps[i]["lrs"]) for i in (0, 2 * STEPS)] == pytest.approx([1e-4, 1e-5])


def test_records_summary_and_diagnostics_follow_the_phases(tmp_path: Path) -> None:
    # Diagnostics on, measuring every step: the ratio monitor must watch what each phase trains.
    diagnostics = {"enabled": True, "live": False, "tensorboard": False, "interval": 1}
    diagnostics["histograms"] = False
    recipe = _recipe(tmp_path, diagnostics=diagnostics)
    summary = train(recipe, out=tmp_path / "run", progress=False)
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in records if r.get("event") == "phase"]
    assert [(e["phase"], e["step"], e["epoch"]) for e in events] == [
        ("probe", 0, 0.0),
        ("finetune", 2 * STEPS, 2.0),
    ]
    assert 'model.freeze_to="layer3"' in events[0]["message"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["phase"] for r in epochs] == [0, 0, 1, 1]
    steps = [r for r in records if r["kind"] == "step"]
    stem = [r["step"] for r in steps if "update_ratio/stem.0" in r]
    assert stem == list(range(2 * STEPS + 1, 4 * STEPS + 1))  # the stem trains in phase 2 only
    assert all("update_ratio/fc" in r for r in steps)
    assert [(p["name"], p["start_epoch"], p["epochs_run"]) for p in summary["phases"]] == [
        ("probe", 0, 2),
        ("finetune", 2, 2),
    ]
    assert summary["phases"][0]["set"] == {"model.freeze_to": "layer3", "optim.lr": 0.1}
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["phases"] == summary["phases"]


def test_train_epochs_left_out_is_the_sum_and_the_resolved_recipe_reloads(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    assert recipe.train.epochs == 4
    assert recipe.phase_recipe(0).train.epochs == 2
    assert recipe.phase_recipe(0).model.freeze_to == "layer3"
    assert recipe.phase_recipe(1).model.freeze_to is None  # a phase starts from the recipe
    assert recipe.phase_recipe(1).optim.lr == 0.01
    from tunekit.config import recipe_to_yaml

    path = tmp_path / "resolved.yaml"
    path.write_text(recipe_to_yaml(recipe))
    assert load_recipe(path) == recipe


def _write(tmp_path: Path, **sections: Any) -> Path:
    data = copy.deepcopy(BASE)
    data["output_dir"] = str(tmp_path / "runs")
    data.update(sections)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _phases(**second: Any) -> list[dict[str, Any]]:
    phases = copy.deepcopy(BASE["phases"])
    phases[1]["set"] = second
    return phases


@pytest.mark.parametrize(
    ("sections", "needles"),
    [
        (
            {"train": {"batch_size": 32, "epochs": 5}},
            ["field 'phases'", "phases whose epochs do not add up", "probe 2 + finetune 2 = 4"],
        ),
        (
            {"phases": _phases(**{"data.image_size": 16})},
            ["field 'phases.1.set.data.image_size'", "cannot change between phases"],
        ),
        (
            {"phases": _phases(**{"model.name": "resnet18"})},
            ["field 'phases.1.set.model.name'", "cannot change between phases"],
        ),
        (
            {"phases": _phases(**{"optim.lrr": 0.1})},
            ["field 'phases.1.set.optim.lrr'", "unknown field (did you mean 'optim.lr'?)"],
        ),
        (
            {"phases": _phases(**{"optim.lr": -1})},
            ["field 'phases.1.set.optim.lr'", "greater than 0", "phase 'finetune'"],
        ),
        (
            {"phases": [{**BASE["phases"][0], "name": "finetune"}, BASE["phases"][1]]},
            ["field 'phases.1.name'", "names two phases"],
        ),
        (  # a stage that is not one, in the second phase: reported before the first step
            {"phases": _phases(**{"model.freeze_to": "layer9"})},
            ["field 'phases.1.set.model.freeze_to'", "unknown stage 'layer9'", "phase 'finetune'"],
        ),
        (
            {"phases": _phases(**{"optim.param_groups": {"layer7": 0.1}})},
            ["field 'phases.1.set.optim.param_groups.layer7'", "matches no parameter"],
        ),
    ],
    ids=[
        "epochs-do-not-add-up",
        "data-cannot-change",
        "model-name-cannot-change",
        "unknown-field",
        "bad-value",
        "same-name",
        "unknown-stage",
        "prefix-matches-nothing",
    ],
)
def test_bad_phases_are_one_line(tmp_path: Path, capsys, sections, needles) -> None:
    recipe = _write(tmp_path, **sections)
    rc = main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and str(recipe) in err
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "run").exists()  # nothing trained, nothing left behind


def test_two_process_phases_match_one_process(tmp_path: Path, cli) -> None:
    # DDP reduces the gradients of the parameters that trained when it wrapped the model: at
    # the boundary the wrapper is rebuilt, or each rank would fine-tune the backbone on its
    # own half of every batch. GroupNorm: no BN statistics to keep in sync on CPU.
    data = copy.deepcopy(BASE)
    data.update(
        output_dir=str(tmp_path / "runs"),
        seed=3,
        data={"name": "digits", "image_size": 12, "train_subset": 256, "val_subset": 101},
        model={"name": "small_cnn", "width": 8, "norm": "gn"},
        optim={"name": "sgd", "lr": 0.02, "momentum": 0.9},
        train={"batch_size": 64},
    )
    data["phases"] = [
        {"name": "probe", "epochs": 1, "set": {"model.freeze_to": "layer3"}},
        {"name": "finetune", "epochs": 1, "set": {"optim.lr": 0.01}},
    ]
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(data))
    train(load_recipe(path), out=tmp_path / "one", progress=False)
    two = cli("train", "--recipe", str(path), "--out", str(tmp_path / "two"), "--nproc", "2")
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 2 * 4
    for name, wa in a["model"].items():
        if wa.is_floating_point():
            rel = float((wa - b["model"][name]).norm() / wa.norm().clamp_min(1e-12))
            assert rel <= 1e-4, f"{name}: relative difference {rel:.2e}"
