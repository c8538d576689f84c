"""`tunekit sanity` and `tunekit lr-find` on recipes: verdicts, exit codes, sanity.json, HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tunekit.cli import main
from tunekit.testing import chromium_dom

REPO = Path(__file__).resolve().parents[2]
DIGITS = str(REPO / "recipes" / "digits.yaml")


def test_digits_recipe_passes_all_checks_and_writes_json_and_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "sanity",
            "--recipe",
            DIGITS,
            "--out",
            str(out),
            "--cross-check-iters",
            "40",
            "--refine-iters",
            "60",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    assert "tunekit sanity — digits: PASS" in captured.out

    data = json.loads((out / "sanity.json").read_text())
    assert data["format"] == "tunekit-sanity-v1" and data["status"] == "PASS"
    checks = {v["check"]: v["status"] for v in data["verdicts"]}
    assert checks == {
        "initial loss": "PASS",
        "overfit": "PASS",
        "lr range test": "PASS",
        "lr cross-check": "PASS",
        "lr refinement": "PASS",
        "update/weight ratio": "PASS",
    }
    assert data["overfit"]["outcome"] == "fit" and data["overfit"]["steps"] < 300
    lr = data["lr"]
    # The refinement ran around the suggestion on the recipe's validation data and chose one of
    # its runs: the one with the highest held-out top-1, a tie to the lower held-out loss.
    refine = lr["refine"]
    assert refine["judged_on"] == "held-out top-1" and refine["start"] == lr["start"]
    runs = refine["runs"]
    assert [r["lr"] for r in runs] == pytest.approx([lr["start"] * k for k in (0.5, 1, 2)])
    best = min(runs, key=lambda r: (-r["held_out_top1"], r["held_out"]))
    assert lr["chosen"] == best["lr"] and "refined to" in lr["chosen_by"]
    assert refine["num_iter"] == 60
    assert lr["field"] == "optim.lr" and lr["optimizer"] == "sgd"
    assert lr["recipe_value"] == lr["chosen"]  # the digits recipe does not use lr_per_256
    assert 1e-3 <= lr["chosen"] <= 1.0 and lr["suggestion"] is not None
    lo, hi = data["search_space"]["lr"]
    assert lo < lr["chosen"] < hi
    assert data["search_space"]["weight_decay"] == [1e-6, 1e-3]
    assert (out / "recipe.yaml").is_file()

    # The contract with the search part: `tunekit search --from-sanity` takes these ranges as they are.
    from optuna.distributions import FloatDistribution

    from tunekit.search import Range
    from tunekit.search._validate import ranges_from_sanity

    space = {
        "optim.lr": Range("optim.lr", FloatDistribution(1e-4, 1.0, log=True)),
        "optim.weight_decay": Range("optim.weight_decay", FloatDistribution(1e-6, 1e-2, log=True)),
    }
    started = {k: r.dist for k, r in ranges_from_sanity(space, str(out / "sanity.json")).items()}
    assert [started["optim.lr"].low, started["optim.lr"].high] == data["search_space"]["lr"]
    assert [started["optim.weight_decay"].low, started["optim.weight_decay"].high] == [1e-6, 1e-3]

    page = out / "sanity.html"
    text = page.read_text()
    from plotly.offline import get_plotlyjs

    assert text.count(get_plotlyjs()) == 1  # inlined once: the page opens offline
    dom = chromium_dom(page)
    for i in range(6):
        assert re.search(rf'<div id="sanity-plot-{i}"[^>]*class="[^"]*js-plotly-plot', dom), (
            f"plot {i} did not render"
        )
    assert dom.count("<tr>") == 7  # header + one row per verdict


def test_lr_10_recipe_fails_the_overfit_check_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "sanity",
            "--recipe",
            DIGITS,
            "--set",
            "optim.lr=10",
            "--out",
            str(out),
            "--no-html",
            "--only",
            "initial-loss",
            "--only",
            "overfit",
        ]
    )
    assert rc == 1
    data = json.loads((out / "sanity.json").read_text())
    assert data["status"] == "FAIL"
    assert data["overfit"]["outcome"] == "exploding"
    assert data["verdicts"][0]["status"] == "PASS"  # the initial loss does not depend on the LR
    assert "lr" not in data and "search_space" not in data
    assert not (out / "sanity.html").exists()
    assert "exploding" in capsys.readouterr().out


def test_lr_find_writes_only_the_lr_section_in_recipe_units(tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "lr-find",
            "--recipe",
            DIGITS,
            "--out",
            str(out),
            "--no-html",
            "--set",
            "optim.lr_per_256=true",
            "--set",
            "data.train_subset=256",
            "--lr-iters",
            "30",
            "--cross-check-iters",
            "10",
            "--refine-iters",
            "10",
        ]
    )
    assert rc == 0
    data = json.loads((out / "sanity.json").read_text())
    assert "overfit" not in data and "initial_loss" not in data
    assert [v["check"] for v in data["verdicts"]] == [
        "lr range test",
        "lr cross-check",
        "lr refinement",
        "update/weight ratio",
    ]
    lr = data["lr"]
    # optim.lr is per 256 images here: the file gives the value to put in the recipe.
    assert lr["recipe_value"] == pytest.approx(lr["chosen"] * 256 / 64)  # batch size 64
    lo, hi = data["search_space"]["lr"]
    assert lo < lr["recipe_value"] < hi
    assert lo == pytest.approx(lr["recipe_value"] / 10)


def test_recipe_missing_its_dataset_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        ["sanity", "--recipe", DIGITS, "--set", "data.name=cifar10", "--out", str(tmp_path / "r")]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "field 'data.root'" in err and "cifar10" in err
    assert not (tmp_path / "r").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr-iters", "1"], "field '--lr-iters': value 1 is not allowed"),
        (["--refine-iters", "5"], "field '--refine-iters': value 5 is not allowed: use 0"),
        (["--start-lr", "1", "--end-lr", "0.1"], "need 0 < --start-lr < --end-lr"),
        (["--set", "data.name=digitz"], "unknown dataset 'digitz' (did you mean 'digits'?)"),
    ],
)
def test_bad_flags_and_recipes_are_one_line_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sanity", "--recipe", DIGITS, "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_shapes_fcos_detector_recipe_passes_initial_loss_and_overfit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detector path on tunekit's own FCOS recipe, on a small generated copy of the shapes set."""
    monkeypatch.setenv("TUNEKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rc = main(
        [
            "sanity",
            "--recipe",
            str(REPO / "recipes" / "shapes_fcos.yaml"),
            "--out",
            str(out),
            "--no-html",
            "--set",
            "data.kwargs={train: 24, val: 8, seed: 0}",
            "--set",
            "train.batch_size=2",
            "--overfit-batches",
            "3",
            "--only",
            "initial-loss",
            "--only",
            "overfit",
        ]
    )
    data = json.loads((out / "sanity.json").read_text())
    assert rc == 0, data["verdicts"]
    assert data["task"] == "detection"
    heads = {h["name"]: h for h in data["initial_loss"]["heads"]}
    assert heads["foreground probability"]["status"] == "PASS"
    assert heads["foreground probability"]["expected"] == 0.01
    assert heads["bbox_ctrness"]["status"] == "PASS"
    fit = data["overfit"]
    assert fit["outcome"] == "fit" and fit["accuracies"] == []
    # The fit is judged on the mean over the last pass of the 3 batches (one batch's loss alone
    # can sit above the line while the pass is below it).
    judged = fit["judged_losses"]
    assert sum(judged[-3:]) / 3 < 0.2 * judged[0] < sum(judged[-6:-3]) / 3
