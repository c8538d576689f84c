"""A real (small) run with the default diagnostics: its record stream and TensorBoard files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tunekit.config import Recipe
from tunekit.diagnostics import ActivationMonitor, auto_layers, diagnostic_hooks
from tunekit.errors import ConfigError
from tunekit.run import train
from tunekit.testing import TinyCNN

STEPS = 16  # 2 epochs of 8 steps


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = Recipe.model_validate(
        {
            "name": "diag",
            "data": {"name": "digits", "image_size": 8, "train_subset": 256, "val_subset": 128},
            "model": {"name": "small_cnn", "width": 4},
            "optim": {"lr": 0.05},
            "train": {"epochs": 2, "batch_size": 32},
            # Gradients checked every step: the automatic interval depends on the machine.
            "diagnostics": {
                "interval": 2,
                "activation_interval": 4,
                "histogram_interval": 8,
                "gradient_check_interval": 1,
            },
        }
    )
    out = tmp_path_factory.mktemp("diag") / "run"
    train(recipe, out=out, progress=True)  # the live view runs too
    return out


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_metrics_stream_holds_step_epoch_and_every_scalar(run_dir: Path) -> None:
    recs = _records(run_dir)
    steps = [r for r in recs if r["kind"] == "step"]
    epochs = [r for r in recs if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))
    assert [r["epoch"] for r in epochs] == [1.0, 2.0] and "val/top1" in epochs[-1]
    assert steps[7]["epoch"] == 1.0 and steps[3]["epoch"] == 0.5
    assert all("train/step_loss" in r and "grad_norm/total" in r and "lr" in r for r in steps)
    measured = [r["step"] for r in steps if "update_ratio/fc" in r]
    assert measured == list(range(2, STEPS + 1, 2))
    assert all(
        r["update_ratio/fc"] > 0 and "grad_norm/stem.0" in r and "weight_norm/fc" in r
        for r in steps
        if r["step"] in measured
    )
    sampled = [r["step"] for r in steps if any(k.startswith("act/") for k in r)]
    assert sampled == [4, 8, 12, 16]
    dead = [v for r in steps for k, v in r.items() if k.startswith("act/") and k.endswith("/dead")]
    assert dead and all(0.0 <= v <= 1.0 for v in dead)
    assert any("throughput/samples_per_s" in r for r in steps)


def test_tensorboard_files_read_back_with_the_expected_tags(run_dir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(
        str(run_dir / "tb"), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0}
    )
    acc.Reload()
    tags = acc.Tags()
    scalars = set(tags["scalars"])
    assert {
        "train/step_loss",
        "grad_norm/total",
        "lr",
        "update_ratio/fc",
        "val/top1",
        "epoch/train/loss",
    } <= scalars
    assert any(t.startswith("act/") and t.endswith("/dead") for t in scalars)
    assert [e.step for e in acc.Scalars("train/step_loss")] == list(range(1, STEPS + 1))
    loss = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first = next(r["train/step_loss"] for r in loss if r["kind"] == "step")
    assert acc.Scalars("train/step_loss")[0].value == pytest.approx(first, rel=1e-6)
    hists = set(tags["histograms"])
    assert {"weights/fc.weight", "updates/fc.weight", "weights/stem.0.weight"} <= hists
    assert [e.step for e in acc.Histograms("updates/fc.weight")] == [8, 16]
    weights = acc.Histograms("weights/fc.weight")[0].histogram_value
    assert (
        weights.num == 10 * 16 and sum(weights.bucket) == 10 * 16
    )  # fc: 16 features -> 10 classes
    assert weights.min < 0 < weights.max


def test_event_files_carry_the_checksums_tensorboard_computes(run_dir: Path) -> None:
    import os
    import struct

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    from tunekit.diagnostics._tensorboard import masked_crc32c

    for n in (0, 1, 7, 64, 1000):
        data = os.urandom(n)
        assert masked_crc32c(data) == reference(data)
    # Every record of the run's event files, framed as TFRecord: length, its crc, data, crc.
    records = 0
    for path in (run_dir / "tb").rglob("events.out.tfevents.*"):
        raw, at = path.read_bytes(), 0
        while at < len(raw):
            header = raw[at : at + 8]
            (length,) = struct.unpack("<Q", header)
            (header_crc,) = struct.unpack("<I", raw[at + 8 : at + 12])
            data = raw[at + 12 : at + 12 + length]
            (data_crc,) = struct.unpack("<I", raw[at + 12 + length : at + 16 + length])
            assert (header_crc, data_crc) == (reference(header), reference(data))
            at += 16 + length
            records += 1
    assert records > STEPS  # a record per step at least, plus histograms and texts


def test_diagnostics_can_be_switched_off_piece_by_piece(tmp_path: Path) -> None:
    from tunekit.config import DiagnosticsConfig

    names = lambda cfg: [type(h).__name__ for h in diagnostic_hooks(cfg, tmp_path)]  # noqa: E731
    assert names(DiagnosticsConfig()) == [
        "ThroughputMonitor",
        "UpdateRatioMonitor",
        "Guards",
        "ActivationMonitor",
        "TensorBoardWriter",
    ]
    assert names(DiagnosticsConfig(enabled=False)) == []
    off = DiagnosticsConfig(guards=False, activations="off", tensorboard=False, live=False)
    assert names(off) == ["ThroughputMonitor", "UpdateRatioMonitor"]


def test_config_rejects_inconsistent_intervals_and_bounds() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="multiple of interval"):
        Recipe.model_validate({"diagnostics": {"interval": 30, "histogram_interval": 100}})
    with pytest.raises(ValidationError, match="low < high"):
        Recipe.model_validate({"diagnostics": {"ratio_bounds": [0.01, 0.001]}})


def test_activation_layers_auto_and_unknown_names() -> None:
    from tunekit.models._small_cnn import SmallCNN

    assert auto_layers(SmallCNN(width=4)) == ["stem.2", "layer1.act", "layer2.act", "layer3.act"]
    # No activation modules (functional relu): its conv layers, not the head.
    assert auto_layers(TinyCNN()) == ["conv1", "conv2"]
    from tunekit.testing import tiny_trainer

    trainer = tiny_trainer([ActivationMonitor(["fc1", "fc3"], interval=1)])
    with pytest.raises(
        ConfigError,
        match=r"unknown layer 'fc3' \(did you mean 'fc2'\?\); choose one of: act, fc1, fc2",
    ):
        trainer.train()


def test_activation_stats_of_a_known_output() -> None:
    from tunekit.diagnostics import activation_stats

    out = torch.zeros(4, 3, 2, 2)
    out[:, 0] = 1.0  # channel 0 alive, channels 1 and 2 dead
    mean, std, dead, sat = activation_stats(torch.nn.ReLU(), out).tolist()
    assert mean == pytest.approx(1 / 3) and dead == pytest.approx(2 / 3) and sat != sat
    assert std == pytest.approx((2 / 9 * 48 / 47) ** 0.5)  # unbiased, over 48 values
    _, _, _, sat = activation_stats(
        torch.nn.Tanh(), torch.tensor([[0.999, 0.0, -0.995, 0.5]])
    ).tolist()
    assert sat == pytest.approx(0.5)


def test_the_default_interval_is_automatic_and_starts_at_20() -> None:
    from pydantic import ValidationError

    from tunekit.config import DiagnosticsConfig
    from tunekit.diagnostics import UpdateRatioMonitor

    assert DiagnosticsConfig().interval == "auto"
    assert Recipe.model_validate({"diagnostics": {"interval": 20}}).diagnostics.interval == 20
    with pytest.raises(ValidationError, match="which starts at 20"):
        Recipe.model_validate({"diagnostics": {"histogram_interval": 30}})
    hooks = diagnostic_hooks(DiagnosticsConfig(tensorboard=False), Path("unused"))
    ratios = next(h for h in hooks if isinstance(h, UpdateRatioMonitor))
    assert ratios.auto and ratios.keep_updates_every is None


def test_an_event_file_resumed_with_a_purge_step_hides_the_earlier_files_later_steps(
    tmp_path: Path,
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.compat.proto.summary_pb2 import Summary

    from tunekit.diagnostics._tensorboard import EventFile

    def scalar(value: float) -> Summary:
        return Summary(value=[Summary.Value(tag="loss", simple_value=value)])

    first = EventFile(tmp_path)
    for step in range(1, 11):
        first.add_summary(scalar(float(step)), step)
    first.close()
    # A run stopped after step 10 and resumed from its checkpoint at step 5.
    resumed = EventFile(tmp_path, purge_step=6)
    for step in range(6, 9):
        resumed.add_summary(scalar(100.0 + step), step)
    resumed.flush()  # read while still open, as TensorBoard reads a live run
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    acc.Reload()
    events = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert events == [(s, float(s)) for s in range(1, 6)] + [(s, 100.0 + s) for s in (6, 7, 8)]
    assert first.path.name.startswith("events.out.tfevents.") and first.path != resumed.path
    resumed.close()
