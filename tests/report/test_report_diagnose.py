"""Curve reading: each synthesised pathology gets its verdict, a healthy run gets none."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from report_helpers import N, cosine, curves, healthy_loss, write_run

from tunekit.report import diagnose, diagnose_curves


def codes(c: object) -> list[str]:
    return [v.code for v in diagnose_curves(c)]  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_healthy_run_gets_no_verdict(seed: int) -> None:
    assert codes(curves(healthy_loss, seed=seed)) == []


def test_diverging_loss() -> None:
    def loss(t: float) -> float:  # falls, then blows up
        return 2.2 * math.exp(-t / 60) + 0.3 if t < 250 else 0.3 * math.exp((t - 250) / 100)

    verdicts = diagnose_curves(curves(loss, lr=lambda t: 0.5))
    assert verdicts[0].code == "diverging"
    assert verdicts[0].numbers["end"] > 10 * verdicts[0].numbers["low"]
    assert "LR" in verdicts[0].advice or "learning rate" in verdicts[0].advice


def test_non_finite_loss_is_diverging_at_its_step() -> None:
    c = curves(healthy_loss)
    c.loss[400:] = [math.nan] * (N - 400)
    v = diagnose_curves(c)[0]
    assert v.code == "diverging" and v.numbers["step"] == 401.0 and "step 401" in v.evidence


def test_flat_then_sudden_drop_is_bad_initialisation() -> None:
    def loss(t: float) -> float:
        return 2.3 if t < 200 else 2.2 * math.exp(-(t - 200) / 25) + 0.1

    verdicts = diagnose_curves(curves(loss, noise=0.03))
    assert [v.code for v in verdicts] == ["flat_then_drop"]
    v = verdicts[0]
    assert 180 <= v.numbers["flat_steps"] <= 240 and "initialisation" in v.advice


def test_plateau_at_a_constant_lr_asks_for_decay() -> None:
    verdicts = diagnose_curves(curves(lambda t: 2.0 * math.exp(-t / 40) + 0.4, lr=lambda t: 0.1))
    assert [v.code for v in verdicts] == ["plateau"]
    assert verdicts[0].numbers["lr"] == 0.1 and "decay" in verdicts[0].advice
    # The same curve under a cosine schedule is not a plateau: the LR was already being decayed.
    assert codes(curves(lambda t: 2.0 * math.exp(-t / 40) + 0.4, lr=cosine)) == []


def test_lr_decay_taken_too_early() -> None:
    def lr(t: float) -> float:
        return 0.1 if t < 150 else 0.01

    def loss(t: float) -> float:  # still falling fast when the LR drops, then nearly stuck
        return 2.2 * math.exp(-t / 150) + 0.05 if t < 150 else 0.86 - 0.0002 * (t - 150)

    verdicts = diagnose_curves(curves(loss, lr=lr, noise=0.03))
    found = [v for v in verdicts if v.code == "decay_too_early"]
    assert len(found) == 1
    assert found[0].numbers["step"] == 150 and found[0].numbers["fall"] > 0.1
    # A decay taken after the loss had flattened is fine.
    late = curves(
        lambda t: 2.2 * math.exp(-t / 40) + 0.3, lr=lambda t: 0.1 if t < 400 else 0.01, noise=0.03
    )
    assert "decay_too_early" not in codes(late)


def test_accuracy_still_rising_says_train_longer() -> None:
    verdicts = diagnose_curves(curves(healthy_loss, val_metric=lambda e: 0.5 + 0.03 * e))
    assert [v.code for v in verdicts] == ["still_improving"]
    assert verdicts[0].numbers["to"] == pytest.approx(0.8) and "longer" in verdicts[0].advice


def test_large_train_val_gap_is_overfitting() -> None:
    gap = lambda e: 0.05 * e**1.5  # noqa: E731  (the validation loss pulls away from the train loss)
    verdicts = diagnose_curves(curves(healthy_loss, val_gap=gap))
    assert [v.code for v in verdicts] == ["overfitting"]
    n = verdicts[0].numbers
    assert n["val_loss"] > 1.5 * n["train_loss"] and "regularisation" in verdicts[0].advice


def test_no_gap_at_a_high_loss_is_underfitting() -> None:
    verdicts = diagnose_curves(curves(lambda t: 0.8 * math.exp(-t / 100) + 1.4))
    assert [v.code for v in verdicts] == ["underfitting"]
    assert verdicts[0].numbers["train_loss"] > 0.25 * verdicts[0].numbers["initial_loss"]


def test_diagnose_reads_a_run_directory(tmp_path: Path) -> None:
    assert diagnose(write_run(tmp_path / "healthy")) == []
    sick = write_run(tmp_path / "sick", curves(healthy_loss, val_metric=lambda e: 0.5 + 0.03 * e))
    assert [v.code for v in diagnose(sick)] == ["still_improving"]


def test_a_real_healthy_run_gets_no_verdict(tmp_path: Path) -> None:
    """The shipped digits recipe (at 8x8 pixels, to save time) trains to ~99% and reads as healthy."""
    from tunekit.config import load_recipe
    from tunekit.report import load_run, report_data
    from tunekit.run import train

    recipe = load_recipe(
        Path(__file__).resolve().parents[2] / "recipes" / "digits.yaml", ["data.image_size=8"]
    )
    summary = train(recipe, out=tmp_path / "run", progress=False)
    assert summary["final"]["val/top1"] > 0.95
    assert diagnose(tmp_path / "run") == []
    data = report_data(load_run(tmp_path / "run"))
    assert len(data.heatmap.steps) == summary["steps"] // 20 and "fc" in data.heatmap.layers
    assert all(1e-4 < m < 3e-2 for m in data.band.median[:5])  # near 1e-3 while the LR is high


def test_a_loss_that_reaches_exactly_zero_then_rises_is_diverging() -> None:
    from tunekit.report import Curves

    loss = [2.0] * 30 + [0.0] * 30 + [5.0] * 40
    c = Curves(steps=[float(s) for s in range(1, 101)], loss=loss, lr=[0.1] * 100)
    (verdict,) = diagnose_curves(c)
    assert verdict.code == "diverging" and "rose to 5 by step 100" in verdict.evidence
