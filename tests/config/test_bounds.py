"""Every number in a recipe is finite and bounded; the messages say the rule and, for sizes, the cost."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tunekit.config import Recipe, load_recipe
from tunekit.config._errors import format_validation_error
from tunekit.errors import ConfigError

DIGITS = Path(__file__).resolve().parents[2] / "recipes" / "digits.yaml"


def _error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_recipe(DIGITS, list(overrides))
    text = str(info.value)
    assert len(text.splitlines()) == 1, text
    return text


NON_FINITE = [
    ("optim.lr=.inf", "optim.lr", "inf"),
    ("optim.lr=1e400", "optim.lr", "'1e400', which is too large for a 64-bit float"),
    ("optim.lr=1.0e+400", "optim.lr", "inf"),
    ("optim.weight_decay=.inf", "optim.weight_decay", "inf"),
    ("optim.grad_clip=.inf", "optim.grad_clip", "inf"),
    ("optim.momentum=.nan", "optim.momentum", "nan"),
    ("optim.betas=[0.9, .nan]", "optim.betas.1", "nan"),
    ("schedule.warmup_epochs=.inf", "schedule.warmup_epochs", "inf"),
    ("schedule.cycle_mult=.inf", "schedule.cycle_mult", "inf"),
    ("schedule.milestones=[.nan]", "schedule.milestones.0", "nan"),
    ("regularization.mixup_alpha=.inf", "regularization.mixup_alpha", "inf"),
    ("train.early_stopping.min_delta=.nan", "train.early_stopping.min_delta", "nan"),
    ("diagnostics.ratio_bounds=[1e-4, .inf]", "diagnostics.ratio_bounds.1", "inf"),
    ("diagnostics.spike_factor=.inf", "diagnostics.spike_factor", "inf"),
    ("averaging.swa={start_epoch: 1, lr: .inf}", "averaging.swa.lr", "inf"),
    ("model.kwargs={scale: -.inf}", "model.kwargs.scale", "-inf"),
    ("data.kwargs={sizes: [1, {a: .nan}]}", "data.kwargs.sizes.1.a", "nan"),
]


@pytest.mark.parametrize(("override", "field", "got"), NON_FINITE, ids=[c[0] for c in NON_FINITE])
def test_non_finite_numbers_are_refused(override: str, field: str, got: str) -> None:
    # Before, all of these were accepted.
    line = _error(override)
    assert f"field '{field}': expected a finite number, got {got}" in line


TOO_LARGE = [
    (
        "train.epochs=1000000",
        "train.epochs",
        "value 1000000 is not allowed: it must be at most 100000",
    ),
    ("train.max_steps_per_epoch=10000000000", "train.max_steps_per_epoch", "at most 1000000000"),
    ("train.eval_every=1000000", "train.eval_every", "at most 100000"),
    ("train.keep_last=100000", "train.keep_last", "at most 1000"),
    ("train.early_stopping.patience=1000000", "train.early_stopping.patience", "at most 100000"),
    (
        "data.num_workers=100000",
        "data.num_workers",
        "value 100000 is not allowed: it must be at most 256",
    ),
    ("data.train_subset=10000000000", "data.train_subset", "at most 1000000000"),
    ("data.augment.random_crop_padding=100000", "data.augment.random_crop_padding", "8192"),
    ("data.augment.min_size=[800, 100000]", "data.augment.min_size.1", "at most 8192"),
    ("data.augment.max_size=100000", "data.augment.max_size", "at most 8192"),
    ("schedule.warmup_epochs=1e9", "schedule.warmup_epochs", "at most 100000"),
    ("schedule.milestones=[30, 1e12]", "schedule.milestones.1", "at most 100000"),
    ("schedule.cycle_epochs=1e12", "schedule.cycle_epochs", "at most 100000"),
    ("schedule.cycle_mult=1e300", "schedule.cycle_mult", "at most 100.0"),
    ("schedule.length_multiplier=1e9", "schedule.length_multiplier", "at most 1000.0"),
    ("averaging.snapshots.ensemble_last=100000", "averaging.snapshots.ensemble_last", "1000"),
    ("averaging.ema.update_every=10000000000", "averaging.ema.update_every", "1000000000"),
    ("diagnostics.interval=10000000000", "diagnostics.interval", "at most 1000000000"),
    ("diagnostics.spike_window=1000000000", "diagnostics.spike_window", "at most 1000000"),
    ("seed=4294967296", "seed", "value 4294967296 is not allowed: it must be at most 4294967295"),
    ("seed=-1", "seed", "value -1 is not allowed: it must be at least 0"),
    (
        "optim.betas=[0.9, 1.0]",
        "optim.betas.1",
        "value 1.0 is not allowed: it must be less than 1.0",
    ),
    ("name=" + "n" * 300, "name", "must be at most 200 characters, got 300"),
]


@pytest.mark.parametrize(("override", "field", "needle"), TOO_LARGE, ids=[c[1] for c in TOO_LARGE])
def test_sizes_and_counts_have_upper_bounds(override: str, field: str, needle: str) -> None:
    line = _error(override)
    assert f"field '{field}'" in line and needle in line


def test_image_size_names_the_memory_of_one_batch() -> None:
    # Before, this tried to allocate the batch.
    line = _error("data.image_size=1000000", "train.batch_size=64")
    assert line.endswith(
        "field 'data.image_size': image_size 1000000 would need ~698 TiB for one batch of 64 "
        "images (3 x 1000000 x 1000000 float32 each); at most 8192 allowed"
    )
    assert load_recipe(DIGITS, ["data.image_size=8192", "train.batch_size=1"])


def test_batch_size_names_the_memory_of_one_batch() -> None:
    line = _error("train.batch_size=100000000", "data.image_size=224")
    assert "field 'train.batch_size': batch_size 100000000 would need ~54.8 TiB" in line
    assert "at most 1048576 allowed" in line


def test_width_names_the_memory_of_the_weights() -> None:
    # Before, model.width=1000000000 reached the model builder and ended in a traceback.
    line = _error("model.width=1000000000")
    assert "field 'model.width': width 1000000000 would need ~" in line
    assert "for small_cnn's weights alone" in line and "at most 4096 allowed" in line


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.epochs=true", "train.epochs"),
        ("train.batch_size=on", "train.batch_size"),
        ("optim.lr=yes", "optim.lr"),
        ("train.max_steps_per_epoch=false", "train.max_steps_per_epoch"),
        ("schedule.milestones=[10, yes]", "schedule.milestones.1"),
    ],
)
def test_booleans_are_not_numbers(override: str, field: str) -> None:
    # Before, `epochs: yes` trained one epoch. YAML 1.2 reads yes/on as text, true as a boolean.
    line = _error(override)
    value = override.split("=", 1)[1].strip("[]").split(", ")[-1]
    if value in ("true", "false"):
        assert f"field '{field}': expected a number, got" in line and "as booleans" in line
    else:
        assert f"field '{field}': expected a" in line and f"got '{value}'" in line
        assert "write the number out in full" not in line


def test_booleans_still_set_boolean_fields() -> None:
    recipe = load_recipe(DIGITS, ["optim.nesterov=true", "train.deterministic=off"])
    assert recipe.optim.nesterov is True and recipe.train.deterministic is False


MESSAGES = [
    ("train.epochs=many", "field 'train.epochs': expected a whole number, got 'many'"),
    ("train.epochs=1e3", "expected a whole number, got '1e3'; write the number out in full"),
    ("train.epochs=2.5", "expected a whole number, got 2.5"),
    ("optim.lr=abc", "field 'optim.lr': expected a number, got 'abc'"),
    ("optim.lr=1" + "0" * 400, "got a 401-digit number, which is too large for a 64-bit float"),
    ("train.epochs=1" + "0" * 400, "value a 401-digit number is not allowed: it must be at most"),
    ("optim.lr=", "field 'optim.lr': expected a number, got nothing (an empty value)"),
    ("name=2024-01-01", "expected text, got 2024-01-01 (a date); put it in quotes"),
    ("name=12", "field 'name': expected text, got 12; put it in quotes to make it text"),
    ("optim=3", "field 'optim': expected a section (a mapping of fields), got 3"),
    # Before, a NUL character in a path ended in "ValueError: embedded null byte".
    ('output_dir="runs/a\\0b"', "field 'output_dir': 'runs/a\\x00b' holds a NUL character"),
    ('model.weights="w\\0.pt"', "field 'model.weights': 'w\\x00.pt' holds a NUL character"),
    ("optim.name=adma", "'rmsprop' or 'adagrad', got 'adma' (did you mean 'adam'?)"),
    ("diagnostics.activations=3", "expected 'auto' or 'off', or a list, got 3"),
    ("averaging.swa={lr: 0.05}", "field 'averaging.swa.start_epoch': missing: the epoch SWA"),
    ("diagnostics.ratio_bounds=[0.1, 0.01]", "got [0.1, 0.01]; swap them"),
    (
        "averaging.snapshots={ensemble_last: 5, keep: 2}",
        "field 'averaging.snapshots.keep': keep (2) must be at least ensemble_last (5)",
    ),
    (
        "diagnostics.interval=7",
        "field 'diagnostics.histogram_interval': histogram_interval (500) must be a multiple",
    ),
]


@pytest.mark.parametrize(("override", "needle"), MESSAGES, ids=[c[0] for c in MESSAGES])
def test_messages_say_what_was_expected_and_what_was_given(override: str, needle: str) -> None:
    line = _error(override)
    assert needle in line
    assert "<top>" not in line and "Input should" not in line and "Value error" not in line


def test_several_problems_are_counted() -> None:
    line = _error("train.epochs=0", "optim.lr=-1", "data.num_workers=-2")
    assert "(2 more problems after this one)" in line


def test_unknown_keys_at_the_top_list_the_sections() -> None:
    with pytest.raises(ValidationError) as info:
        Recipe.model_validate({"trian": {}})
    line = str(format_validation_error(info.value, Recipe, file="r.yaml"))
    assert line.startswith("r.yaml: field 'trian': unknown key (did you mean 'train'?)")
    assert "allowed here: name, task, seed" in line


def test_every_shipped_recipe_still_loads() -> None:
    for path in sorted(DIGITS.parent.glob("*.yaml")):
        load_recipe(path)


def test_yaml_1_1_words_are_text_so_on_off_choices_work_and_bool_fields_still_read_them(tmp_path):
    from tunekit.config import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(
        "train: {amp: off, channels_last: on, deterministic: yes}\ndiagnostics: {enabled: no}\n"
    )
    recipe = load_recipe(path, ["train.amp=off"])
    assert (recipe.train.amp, recipe.train.channels_last) == ("off", "on")
    assert recipe.train.deterministic is True and recipe.diagnostics.enabled is False
