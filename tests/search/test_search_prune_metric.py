"""A pruner that compares the EMA model's metric while the trials are valued on the model's own."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import optuna

from tunekit.search import open_search, run_worker

# A median pruner that prunes from the second trial on, comparing the EMA model's top-1.
STAGE = {
    "name": "coarse",
    "sampler": "random",
    "trials": 4,
    "epochs": 3,
    "set": ["averaging.ema.decay=0.9", "averaging.ema.recalibrate_batches=2"],
    "pruner": {"name": "median", "n_startup_trials": 1, "metric": "ema/val/top1"},
}


def test_pruner_sees_the_ema_metric_and_trials_keep_their_own(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_study(stages=[STAGE])
    ctx = open_search(str(path), out=tmp_path / "study")
    run_worker(ctx)
    trials = ctx.search.trials(ctx.search.stages[0])
    assert len(trials) == 4
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for t in trials:
        records = [
            json.loads(line)
            for line in Path(t.user_attrs["run_dir"], "metrics.jsonl").read_text().splitlines()
        ]
        epochs = [r for r in records if r.get("kind") == "epoch" and "val/top1" in r]
        # What the pruner saw, epoch by epoch at its step: the EMA model's top-1, not the model's.
        assert t.intermediate_values == {int(r["step"]): r["ema/val/top1"] for r in epochs}
        if t.state == optuna.trial.TrialState.COMPLETE:
            # The trial's value is the study's metric: the model's own best top-1.
            assert t.value == max(r["val/top1"] for r in epochs)
            assert any(r["ema/val/top1"] != r["val/top1"] for r in epochs)
