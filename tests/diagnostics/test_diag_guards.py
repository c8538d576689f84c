"""Guards: a non-finite loss or gradient stops the step it appears in; spikes become events."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tunekit.diagnostics import Guards, NonFiniteError, UpdateRatioMonitor
from tunekit.tasks import ClassificationTask
from tunekit.testing import TinyMLP, tiny_trainer


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_nan_gradient_at_step_k_stops_step_k_naming_the_layer() -> None:
    k = 3
    model = TinyMLP()
    trainer = tiny_trainer([Guards()], model=model, epochs=2)
    weights_before_k: dict[str, torch.Tensor] = {}

    def poison(grad: torch.Tensor) -> torch.Tensor:
        if trainer.step + 1 == k:
            weights_before_k.update(_snapshot(model))
            return grad * math.nan
        return grad

    model.fc2.weight.register_hook(poison)
    with pytest.raises(NonFiniteError) as info:
        trainer.train()
    err = info.value
    assert (err.step, err.where, err.layer, err.parameter) == (k, "gradient", "fc2", "fc2.weight")
    assert math.isfinite(err.loss_terms["loss"])
    assert trainer.step == k - 1  # the step was not taken ...
    after = _snapshot(model)
    assert all(torch.equal(after[n], weights_before_k[n]) for n in after)  # ... and no weight moved
    assert f"step {k}" in str(err) and "'fc2'" in str(err) and "\n" not in str(err)
    assert [e["step"] for e in trainer.metrics.events if e["event"] == "non_finite"] == [k]


def test_with_a_gradient_check_interval_a_bad_gradient_is_caught_by_the_next_loss() -> None:
    k = 3  # not a checked step (every 4th is)
    model = TinyMLP()
    trainer = tiny_trainer([Guards(gradient_check_interval=4)], model=model, epochs=2)
    model.fc2.weight.register_hook(lambda g: g * math.nan if trainer.step + 1 == k else g)
    with pytest.raises(NonFiniteError) as info:
        trainer.train()
    err = info.value
    # Step k was applied (its weights are broken); step k + 1's loss stops the run at fc2.
    assert (err.step, err.where, err.layer) == (k + 1, "loss", "fc2")
    assert not torch.isfinite(model.fc2.weight).all()


def test_nan_loss_names_the_first_layer_whose_output_went_bad() -> None:
    k = 2
    model = TinyMLP()
    trainer = tiny_trainer([Guards()], model=model)
    model.fc1.register_forward_hook(
        lambda m, i, out: out * math.nan if trainer.step + 1 == k else None
    )
    with pytest.raises(NonFiniteError) as info:
        trainer.train()
    err = info.value
    assert (err.step, err.where, err.layer) == (k, "loss", "fc1")
    assert math.isnan(err.loss_terms["loss"])
    assert trainer.step == k - 1


def test_nan_input_is_reported_as_the_input() -> None:
    trainer = tiny_trainer([Guards()])

    class BadData(ClassificationTask):
        def losses(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
            x, y = batch
            x[0, 0] = math.inf
            return super().losses(model, (x, y))

    trainer.task = BadData(4)
    with pytest.raises(NonFiniteError) as info:
        trainer.train()
    assert info.value.step == 1 and info.value.layer is None
    assert "input batch" in str(info.value)


def test_non_finite_error_survives_pickling() -> None:
    import pickle

    err = NonFiniteError(step=4, epoch=1, where="loss", loss_terms={"loss": math.nan}, layer="fc1")
    back = pickle.loads(pickle.dumps(err))
    assert (back.step, back.layer, str(back)) == (4, "fc1", str(err))
    assert isinstance(back, FloatingPointError)


def test_a_loss_spike_is_an_event_and_training_goes_on() -> None:
    guards = Guards(spike_factor=3.0, spike_window=10)

    class Spiky(ClassificationTask):
        def losses(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
            out = super().losses(model, batch)
            if trainer.step + 1 == 9:
                out["loss"] = out["loss"] * 20
            return out

    trainer = tiny_trainer(  # 12 slow steps: the loss stays near its start, so x20 is a clear spike
        [guards],
        task=Spiky(4),
        epochs=3,
        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.01),
    )
    trainer.train()
    assert trainer.step == 12
    assert [s["step"] for s in guards.spikes] == [9]
    spikes = [e for e in trainer.metrics.events if e["event"] == "loss_spike"]
    assert len(spikes) == 1 and spikes[0]["loss"] > 3 * spikes[0]["median"]


def test_a_failing_diagnostic_turns_itself_off_and_the_run_finishes() -> None:
    class Broken(UpdateRatioMonitor):
        def _report(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("boom")

    broken = Broken(interval=1)
    trainer = tiny_trainer([broken, Guards()], epochs=2)
    trainer.train()
    assert trainer.step == 8 and broken.disabled
    errors = [e for e in trainer.metrics.events if e["event"] == "diagnostic_error"]
    assert len(errors) == 1 and "boom" in errors[0]["message"] and errors[0]["step"] == 1


def test_train_command_prints_one_line_and_exits_3_on_divergence(
    write_recipe: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunekit.cli import main  # in-process; the DDP test below goes through a real subprocess

    recipe = write_recipe(
        optim={"name": "sgd", "lr": 1.0e6, "momentum": 0.0, "nesterov": False},
        train={"epochs": 2, "batch_size": 64, "max_steps_per_epoch": 5},
        data={"name": "digits", "image_size": 8, "train_subset": 320},
        model={"name": "small_cnn", "width": 4},
        diagnostics={"tensorboard": False, "activations": "off"},
    )
    out = tmp_path / "run"
    assert main(["train", "--recipe", str(recipe), "--out", str(out), "--no-progress"]) == 3
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("tunekit: error:")]
    assert len(lines) == 1 and "non-finite" in lines[0] and "Traceback" not in err
    events = (out / "metrics.jsonl").read_text()
    assert '"event": "non_finite"' in events


def test_under_ddp_only_rank_0_writes_and_a_divergence_stops_every_rank(
    cli: Any, write_recipe: Any, tmp_path: Path
) -> None:
    recipe = write_recipe(
        optim={"name": "sgd", "lr": 1.0e6, "momentum": 0.0, "nesterov": False},
        train={"epochs": 1, "batch_size": 32, "max_steps_per_epoch": 6},
        data={"name": "digits", "image_size": 8, "train_subset": 384, "val_subset": 64},
        model={"name": "small_cnn", "width": 4, "norm": "gn"},
        diagnostics={"interval": 1, "activations": "off"},
    )
    out = tmp_path / "run"
    proc = cli("train", "--recipe", str(recipe), "--out", str(out), "--nproc", "2", timeout=180)
    assert proc.returncode != 0  # and it returned: no rank was left waiting in a collective
    assert "tunekit: error: non-finite" in proc.stderr
    import json

    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in recs if r["kind"] == "step"]
    assert steps and steps == sorted(set(steps))  # each step once: rank 1 wrote nothing
    stops = [r for r in recs if r.get("event") == "non_finite"]
    assert len(stops) == 1 and stops[0]["step"] == steps[-1] + 1
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1


def test_auto_gradient_checks_time_steps_6_to_15_then_keep_the_interval_they_chose() -> None:
    from tunekit.diagnostics._guards import CHECK_CALIBRATION, CHECK_INTERVALS, CHECK_WARMUP

    guards = Guards()
    assert guards.auto and guards.gradient_check_interval == 1
    trainer = tiny_trainer([guards], n=16 * 60)
    checked: list[int] = []
    norms_to_host = guards._norms_to_host

    def seen(head: list[torch.Tensor], grads: list[torch.Tensor]) -> list[float]:
        checked.append(trainer.step + 1)
        return norms_to_host(head, grads)

    guards._norms_to_host = seen  # type: ignore[method-assign]
    trainer.train()
    chosen = guards.gradient_check_interval
    last_timed = CHECK_WARMUP + CHECK_CALIBRATION
    assert chosen in CHECK_INTERVALS and guards.state_dict() == {"gradient_check_interval": chosen}
    cadence = [e for e in trainer.metrics.events if e["event"] == "diagnostics_cadence"]
    assert [(e["check"], e["interval"]) for e in cadence] == [("gradients", chosen)]
    assert cadence[0]["measurement_ms"] > 0 and cadence[0]["step_ms"] > 0
    # Every step until the choice, then every chosen-th.
    later = [s for s in range(last_timed + 1, trainer.step + 1) if s % chosen == 0]
    assert checked == [*range(1, last_timed + 1), *later]


def test_the_calibration_picks_the_sparsest_check_only_when_a_check_is_dear() -> None:
    from tunekit.diagnostics._cadence import Calibration
    from tunekit.diagnostics._guards import CHECK_INTERVALS

    cheap = Calibration(CHECK_INTERVALS, samples=3)
    cheap.costs, cheap.steps = [1e-5, 2e-5, 3e-5], [0.1, 0.1, 5.0]  # 5 s: an evaluation
    assert cheap.choice() == (1, 1e-5, 0.1)
    dear = Calibration(CHECK_INTERVALS, samples=3)
    dear.costs, dear.steps = [3e-3, 9e-3, 4e-3], [0.1] * 3  # 3% of a step: every 20th
    assert dear.choice() == (20, 3e-3, 0.1)
    dear.costs = dear.costs[:2]
    assert dear.choice() is None  # not enough timings yet


def test_a_resumed_auto_guard_keeps_its_interval() -> None:
    guards = Guards()
    guards.load_state_dict({"gradient_check_interval": 5})
    trainer = tiny_trainer([guards], n=16 * 12)
    trainer.train()
    assert guards.gradient_check_interval == 5
    assert not [e for e in trainer.metrics.events if e["event"] == "diagnostics_cadence"]
