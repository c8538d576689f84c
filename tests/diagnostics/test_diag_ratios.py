"""Update/weight ratios: measured from the optimizer's real change, per parameter and per layer."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tunekit.diagnostics import UpdateRatioMonitor
from tunekit.engine import HookBase
from tunekit.testing import TinyMLP, tiny_trainer


def test_layer_left_out_of_the_optimizer_has_ratio_zero_and_is_warned_about() -> None:
    model = TinyMLP()
    monitor = UpdateRatioMonitor(interval=1, patience=3)
    trainer = tiny_trainer(
        [monitor],
        model=model,
        optimizer=lambda m: torch.optim.SGD(m.fc2.parameters(), lr=0.1),  # fc1 forgotten
    )
    trainer.train()

    assert monitor.last_ratios["fc1"] == 0.0
    assert monitor.last_ratios["fc2"] is not None and monitor.last_ratios["fc2"] > 0
    warned = [w for w in monitor.warnings if w["layer"] == "fc1"]
    assert len(warned) == 1 and warned[0]["step"] == 3  # the third check in a row
    assert "not being trained at all" in warned[0]["message"]
    assert not [w for w in monitor.warnings if w["layer"] == "fc2" and w["ratio"] == 0]
    events = [e for e in trainer.metrics.events if e["event"] == "ratio_warning"]
    assert [e["layer"] for e in events if e["layer"] == "fc1"] == ["fc1"]


def _one_step_ratios(lr: float) -> dict[str, float | None]:
    monitor = UpdateRatioMonitor(interval=1)
    trainer = tiny_trainer([monitor], optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=lr))
    trainer.max_steps_per_epoch = 1
    trainer.train()
    return monitor.last_ratios


def test_doubling_the_lr_of_plain_sgd_doubles_the_ratio() -> None:
    base, double = _one_step_ratios(0.01), _one_step_ratios(0.02)
    assert base.keys() == double.keys() == {"fc1", "fc2"}
    for layer in base:
        b, d = base[layer], double[layer]
        assert b is not None and d is not None and b > 0
        assert d / b == pytest.approx(2.0, rel=1e-4)


def test_ratio_is_the_real_change_with_adamw_and_weight_decay() -> None:
    model = TinyMLP()
    monitor = UpdateRatioMonitor(interval=1)
    trainer = tiny_trainer(
        [monitor],
        model=model,
        optimizer=lambda m: torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.1),
    )
    trainer.max_steps_per_epoch = 2
    before: dict[str, torch.Tensor] = {}

    class Snapshot(HookBase):  # the weights just before the second step, copied by hand
        def after_backward(self) -> None:
            if self.trainer.step == 1:
                before.update(
                    {n: p.detach().clone() for n, p in self.trainer.module.named_parameters()}
                )

    trainer.register_hooks([Snapshot()])
    trainer.train()
    after = {n: p.detach() for n, p in model.named_parameters()}
    for layer in ("fc1", "fc2"):
        delta = sum(
            float((after[f"{layer}.{p}"] - before[f"{layer}.{p}"]).pow(2).sum())
            for p in ("weight", "bias")
        )
        norm = sum(float(before[f"{layer}.{p}"].pow(2).sum()) for p in ("weight", "bias"))
        assert monitor.last_ratios[layer] == pytest.approx((delta / norm) ** 0.5, rel=1e-5)
    record = trainer.metrics.latest
    assert record["param_update_ratio/fc1.weight"] > 0
    assert record["grad_norm/fc1"] > 0 and record["weight_norm/fc1"] > 0


def test_frozen_parameters_are_not_watched_and_ratios_come_every_interval() -> None:
    model = TinyMLP()
    model.fc1.requires_grad_(False)
    monitor = UpdateRatioMonitor(interval=2, patience=1)
    seen: list[int] = []
    trainer = tiny_trainer([monitor], model=model, epochs=2)  # 8 steps
    trainer.metrics.subscribe(lambda r: seen.append(r["step"]) if "update_ratio/fc2" in r else None)
    trainer.train()
    assert seen == [2, 4, 6, 8]
    assert set(monitor.last_ratios) == {"fc2"}
    assert not [w for w in monitor.warnings if w["layer"] == "fc1"]


WARMUP_STEPS = 24


def _warmup_run(peak_lr: float) -> tuple[UpdateRatioMonitor, dict[int, float]]:
    """40 steps of plain SGD whose LR rises linearly from peak/1000 over 24 steps, then holds."""
    monitor = UpdateRatioMonitor(interval=1, patience=3)
    trainer = tiny_trainer(
        [monitor],
        optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=peak_lr),
        n=64,
        batch_size=8,
        epochs=5,
    )
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(
        trainer.optimizer, lambda step: min(1.0, 0.001 + step / WARMUP_STEPS)
    )
    ratios: dict[int, float] = {}
    trainer.metrics.subscribe(
        lambda r: (
            ratios.update({r["step"]: r["update_ratio/fc1"]}) if "update_ratio/fc1" in r else None
        )
    )
    trainer.train()
    return monitor, ratios


def test_low_ratios_during_a_warmup_are_not_warned_about() -> None:
    # At its peak this LR gives fc1 a healthy ratio (about 4e-4); the warmup's first steps
    # give ratios a hundred times smaller, which warned before: the highest LR seen during
    # a rising warmup is the current one, so they did not look like a warmup at all.
    monitor, ratios = _warmup_run(1e-3)
    low_in_warmup = [s for s, r in ratios.items() if s <= WARMUP_STEPS and r < 1e-4]
    assert len(low_in_warmup) >= 4  # patience 3 would have fired
    assert min(ratios[s] for s in ratios if s > WARMUP_STEPS) > 2e-4
    assert not [w for w in monitor.warnings if "too low" in w["message"]], monitor.warnings


def test_a_learning_rate_too_low_after_the_warmup_still_warns() -> None:
    monitor, ratios = _warmup_run(1e-5)
    assert max(ratios[s] for s in ratios if s > WARMUP_STEPS) < 1e-5
    low = [w for w in monitor.warnings if "too low" in w["message"]]
    assert {w["layer"] for w in low} == {"fc1", "fc2"}
    # Not before the LR stopped rising: three checks in a row past the warmup's end.
    assert all(w["step"] == WARMUP_STEPS + 3 for w in low), low


def test_auto_interval_keeps_the_measurements_under_a_quarter_percent_of_the_time() -> None:
    from tunekit.diagnostics._ratios import AUTO_INTERVALS, auto_interval

    # A cheap measurement against its steps keeps the first cadence.
    assert auto_interval(0.001, 0.100, AUTO_INTERVALS) == 20
    # 30 ms against 100 ms steps: 0.25% needs 120 steps between measurements.
    assert auto_interval(0.030, 0.100, AUTO_INTERVALS) == 250
    # Nothing keeps it under 0.25%: the sparsest cadence.
    assert auto_interval(10.0, 0.001, AUTO_INTERVALS) == 500
    assert auto_interval(0.030, 0.100, (20, 50)) == 50


def _measured_steps(
    monitor: UpdateRatioMonitor, steps: int
) -> tuple[list[int], list[dict[str, Any]]]:
    """The steps ``monitor`` measured in a run of ``steps`` steps, and the run's cadence events."""
    measured: list[int] = []

    class Seen(HookBase):
        priority = 21  # right after the monitor

        def after_step(self) -> None:
            if monitor.last_step == self.trainer.step:
                measured.append(self.trainer.step)

    trainer = tiny_trainer([monitor, Seen()], n=16 * steps)
    trainer.train()
    cadence = [e for e in trainer.metrics.events if e["event"] == "diagnostics_cadence"]
    return measured, cadence


def test_auto_cadence_times_two_measurements_then_keeps_the_interval_it_chose() -> None:
    from tunekit.diagnostics._ratios import AUTO_INTERVALS

    monitor = UpdateRatioMonitor()
    assert monitor.auto and monitor.calibrating and monitor.interval == 20
    measured, cadence = _measured_steps(monitor, 120)
    chosen = monitor.interval
    assert chosen in AUTO_INTERVALS and not monitor.calibrating
    assert len(cadence) == 1 and cadence[0]["step"] == 40 and cadence[0]["interval"] == chosen
    assert cadence[0]["measurement_ms"] > 0 and cadence[0]["step_ms"] > 0
    later = [s for s in range(41, 121) if s % chosen == 0]
    assert measured == [20, 40, *later]
    assert monitor.state_dict()["interval"] == chosen


def test_a_set_interval_is_kept_and_a_resumed_auto_run_keeps_its_choice() -> None:
    fixed = UpdateRatioMonitor(interval=30)
    measured, cadence = _measured_steps(fixed, 70)
    assert measured == [30, 60] and cadence == []
    assert fixed.state_dict()["interval"] == 30

    resumed = UpdateRatioMonitor()
    resumed.load_state_dict({"interval": 50})
    measured, cadence = _measured_steps(resumed, 110)
    assert measured == [50, 100] and cadence == []  # no second calibration
