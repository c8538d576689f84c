"""Bad input gets one clear line (file, field, value, what is allowed), exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunekit.cli import main

DIGITS = Path(__file__).resolve().parents[2] / "recipes" / "digits.yaml"


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


def _recipe(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


CASES = [
    # (id, recipe text or None for digits.yaml, extra args, substrings the line must hold)
    (
        "malformed-yaml",
        "name: x\ndata: {name: digits\n",
        [],
        ["bad.yaml", "malformed YAML", "line"],
    ),
    ("top-not-mapping", "- a\n- b\n", [], ["bad.yaml", "must be a mapping of fields", "a list"]),
    (
        "empty-file",
        "",
        [],
        ["bad.yaml", "the file is empty", "start from a copy of recipes/digits.yaml"],
    ),
    ("comments-only", "# nothing yet\n\n", [], ["bad.yaml", "the file is empty"]),
    (
        "duplicate-key",
        "optim:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.5\n",
        [],
        ["bad.yaml", "field 'optim.lr'", "appears twice (lines 2 and 4)"],
    ),
    (
        "duplicate-section",
        "train: {epochs: 3}\noptim: {lr: 0.1}\ntrain: {epochs: 30}\n",
        [],
        ["field 'train'", "appears twice (lines 1 and 3)"],
    ),
    (
        "deep-nesting",
        "data:\n  kwargs:\n    x: " + "[" * 5000 + "]" * 5000 + "\n",
        [],
        ["bad.yaml", "nesting deeper than 64 levels at line 3"],
    ),
    (
        "binary-file",
        "\x00\x01binary",
        [],
        ["bad.yaml", "not a YAML text file", "#x0000"],
    ),
    ("infinite-lr", "optim: {lr: .inf}\n", [], ["optim.lr", "expected a finite number, got inf"]),
    (
        "overflowing-lr",
        "optim: {lr: 1e400}\n",
        [],
        ["optim.lr", "got '1e400', which is too large for a 64-bit float"],
    ),
    (
        "huge-image-size",
        "data: {image_size: 1000000}\n",
        [],
        ["data.image_size", "image_size 1000000 would need ~", "TiB", "at most 8192 allowed"],
    ),
    (
        "huge-width",
        "model: {width: 1000000000}\n",
        [],
        ["model.width", "EiB for small_cnn's weights", "at most 4096 allowed"],
    ),
    (
        "boolean-epochs",
        "train: {epochs: true}\n",
        [],
        ["train.epochs", "expected a number, got true", "as booleans"],
    ),
    (
        "unknown-key-typo",
        "name: x\noptim: {lrr: 0.1}\n",
        [],
        ["optim.lrr", "unknown key", "did you mean 'lr'"],
    ),
    ("unknown-section", "name: x\ntrian: {epochs: 1}\n", [], ["'trian'", "did you mean 'train'"]),
    (
        "wrong-type",
        "train: {epochs: many}\n",
        [],
        ["train.epochs", "expected a whole number, got 'many'"],
    ),
    ("zero-lr", "optim: {lr: 0}\n", [], ["optim.lr", "0", "greater than 0"]),
    ("negative-lr", "optim: {lr: -0.1}\n", [], ["optim.lr", "-0.1", "greater than 0"]),
    (
        "bad-literal",
        "optim: {name: lamb}\n",
        [],
        ["optim.name", "'lamb'", "'rmsprop' or 'adagrad'"],
    ),
    ("bad-norm", "model: {norm: layernorm}\n", [], ["model.norm", "layernorm"]),
    ("val-fraction", "data: {val_fraction: 1.5}\n", [], ["data.val_fraction", "1.5"]),
    (
        "nesterov-no-momentum",
        "optim: {nesterov: true, momentum: 0}\n",
        [],
        ["field 'optim.momentum'", "nesterov: true needs momentum above 0", "nesterov: false"],
    ),
    (
        "unknown-model",
        "model: {name: resnet19}\n",
        [],
        ["model.name", "resnet19", "did you mean 'resnet18'"],
    ),
    (
        "unknown-dataset",
        "data: {name: digitz}\n",
        [],
        ["data.name", "digitz", "did you mean 'digits'"],
    ),
    (
        "unknown-schedule",
        "schedule: {name: cosin}\ntrain: {epochs: 1}\n",
        [],
        ["schedule.name", "cosin", "cosine"],
    ),
    (
        "missing-dataset-path",
        "data: {name: imagefolder, root: /nonexistent/images}\n",
        [],
        ["data.root", "/nonexistent/images", "does not exist"],
    ),
    (
        "cifar-without-root",
        "data: {name: cifar10}\n",
        [],
        ["data.root", "cifar10", "--set data.root="],
    ),
    (
        "unimportable-builder",
        "model: {builder: 'no_such_pkg.models:make'}\n",
        [],
        ["model.builder", "no_such_pkg.models"],
    ),
    (
        "builder-bad-form",
        "data: {builder: 'just_a_name'}\n",
        [],
        ["data.builder", "package.module:function"],
    ),
    (
        "builder-missing-attr",
        "model: {builder: 'tunekit.models:no_such_fn'}\n",
        [],
        ["model.builder", "no_such_fn"],
    ),
    (
        "missing-recipe-file",
        None,
        ["--recipe", "/nonexistent/r.yaml"],
        ["/nonexistent/r.yaml", "no such file"],
    ),
    (
        "override-unknown-key",
        None,
        ["--set", "train.epoch=3"],
        ["train.epoch", "did you mean 'epochs'"],
    ),
    ("override-bad-form", None, ["--set", "optim.lr"], ["--set", "section.field=value"]),
    (
        "override-bad-value",
        None,
        ["--set", "train.batch_size=-4"],
        ["train.batch_size", "value -4 is not allowed: it must be greater than 0"],
    ),
    (
        "override-non-finite",
        None,
        ["--set", "schedule.milestones=[3, .nan]"],
        ["schedule.milestones.1", "expected a finite number, got nan"],
    ),
    (
        "override-huge-seed",
        None,
        ["--set", "seed=18446744073709551616"],
        ["field 'seed'", "must be at most 4294967295"],
    ),
    (
        "override-deep-value",
        None,
        ["--set", "model.kwargs=" + "[" * 3000 + "]" * 3000],
        ["field 'model.kwargs'", "in the override's value", "nesting deeper than 64 levels"],
    ),
    (
        "batch-bigger-than-data",
        None,
        ["--set", "train.batch_size=5000"],
        ["train.batch_size", "5000", "training set"],
    ),
    (
        "freeze-unknown-stage",
        None,
        ["--set", "model.freeze_to=layer9"],
        ["model.freeze_to", "layer9", "layer1"],
    ),
    (
        "metric-misspelt",
        None,
        ["--set", "train.metric=val/acc"],
        ["train.metric", "'val/acc'", "val/loss, val/top1, val/top5"],
    ),
    (
        "metric-of-an-average-not-kept",
        None,
        ["--set", "train.metric=ema/val/top1"],
        ["train.metric", "'ema/val/top1'", "no averaging.ema"],
    ),
    (
        "metric-of-an-average-not-kept-older-spelling",
        None,
        ["--set", "train.metric=val_swa/top1"],
        ["train.metric", "'swa/val/top1'", "no averaging.swa"],
    ),
    (
        "weights-missing-file",
        None,
        ["--set", "model.weights=/nonexistent/w.pt"],
        ["model.weights", "/nonexistent/w.pt"],
    ),
]


@pytest.mark.parametrize(
    ("text", "extra", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_recipe_gives_one_line(tmp_path, capsys, text, extra, needles):
    recipe = str(_recipe(tmp_path, text)) if text is not None else str(DIGITS)
    args = ["train", "--recipe", recipe, "--out", str(tmp_path / "run"), "--no-progress"]
    if "--recipe" in extra:
        args[2] = extra[extra.index("--recipe") + 1]
        extra = []
    rc, err = _run(capsys, *args, *extra)
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("tunekit: error: ")
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_truncated_checkpoint_for_resume(tmp_path, capsys):
    good = tmp_path / "good.pt"
    torch.save({"format": "tunekit-checkpoint-v1", "model": {"w": torch.zeros(1000)}}, good)
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good.read_bytes()[:300])
    rc, err = _run(capsys, "train", "--recipe", str(DIGITS), "--resume", str(bad), "--no-progress")
    assert rc == 2 and len(err.splitlines()) == 1
    assert "truncated.pt" in err and "not a readable checkpoint" in err
    assert bad.read_bytes() == good.read_bytes()[:300]  # nothing touched


def test_non_checkpoint_file_for_resume(tmp_path, capsys):
    other = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, other)
    rc, err = _run(
        capsys, "train", "--recipe", str(DIGITS), "--resume", str(other), "--no-progress"
    )
    assert rc == 2 and "not a tunekit checkpoint" in err and "weights.pt" in err


def test_text_file_for_resume(tmp_path, capsys):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    rc, err = _run(
        capsys, "train", "--recipe", str(DIGITS), "--resume", str(other), "--no-progress"
    )
    assert rc == 2 and "notes.txt" in err


def test_resume_without_any_run(tmp_path, capsys):
    recipe = _recipe(tmp_path, f"name: nothing_yet\noutput_dir: {tmp_path / 'runs'}\n")
    rc, err = _run(capsys, "train", "--recipe", str(recipe), "--resume", "--no-progress")
    assert rc == 2 and "nothing_yet" in err and "--resume FILE" in err


def test_a_real_process_prints_no_traceback(tmp_path, cli):
    recipe = _recipe(tmp_path, "optim: {lr: -1}\n")
    r = cli("train", "--recipe", str(recipe))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"tunekit: error: {recipe}: field 'optim.lr': value -1 is not allowed: it must be greater than 0.0"
    ]
