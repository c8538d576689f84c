"""The LR suggestion rules (steepest, valley, min10) on synthetic curves, and which one is reported."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tunekit
from tunekit.cli import main
from tunekit.sanity import (
    DEFAULT_RULE,
    RULES,
    CrossCheckResult,
    SanityError,
    ShortRun,
    Verdict,
    recommend,
    suggest_all,
    suggest_lr,
)

DIGITS = str(Path(__file__).resolve().parents[2] / "recipes" / "digits.yaml")
LRS = list(np.logspace(-7, 1, 101))  # 0.08 decades a point


def _valley_curve() -> list[float]:
    # Flat at 2.3 up to 1e-4, a straight fall in log LR to 0.3 at 1e-1, then a steep rise:
    # the longest fall runs from 1e-4 to 1e-1 and its middle is 10 ** -2.5.
    x = np.log10(LRS)
    y = np.where(x < -4, 2.3, 2.3 - 2.0 * (x + 4) / 3)
    return list(np.where(x > -1, 0.3 + 20 * (x + 1) ** 2, y))


def _within(lr: float | None, target: float, factor: float) -> bool:
    return lr is not None and target / factor < lr < target * factor


def test_rule_names_match_the_cli_choices() -> None:
    from tunekit.sanity.cli import RULE_NAMES

    assert tuple(RULES) == RULE_NAMES and RULE_NAMES[0] == DEFAULT_RULE


def test_each_rule_on_a_known_valley() -> None:
    y = _valley_curve()
    found = suggest_all(LRS, y)
    assert _within(found["valley"], 10**-2.5, 1.3), found
    assert _within(found["min10"], 1e-2, 1.3), found  # a tenth of the minimum at 1e-1
    assert _within(found["steepest"], 10**-2.5, 10**1.6), found  # anywhere on the straight fall
    lr, reason = suggest_lr(LRS, y, rule="valley")
    assert lr == found["valley"] and "longest fall" in reason


def test_a_spike_in_the_fall_moves_steepest_but_not_valley() -> None:
    y = _valley_curve()
    spike = 55  # on the fall, at 10 ** -2.6
    y[spike] += 0.6
    valley, _ = suggest_lr(LRS, y, rule="valley")
    steepest, _ = suggest_lr(LRS, y, rule="steepest")
    assert _within(valley, 10**-2.5, 1.3)  # the longest decreasing run steps over the spike
    # the steepest slope is where the loss drops back from the spike
    assert steepest is not None and abs(math.log10(steepest / LRS[spike])) < 0.2


def test_non_finite_points_are_dropped_and_said_by_every_rule() -> None:
    y = _valley_curve()
    y[40] = math.nan
    y[-2:] = [math.inf, math.inf]
    for rule in RULES:
        lr, reason = suggest_lr(LRS, y, rule=rule)
        assert lr is not None and math.isfinite(lr), rule
        assert "3 non-finite points dropped" in reason, (rule, reason)
    assert _within(suggest_lr(LRS, y, rule="valley")[0], 10**-2.5, 1.3)


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize(
    ("losses", "why"),
    [
        ([math.nan] * 101, "too few finite points"),
        ([2.0] * 101, "did not fall"),
        (list(np.linspace(2.0, 1.99, 101)), "fell by only"),
    ],
)
def test_no_suggestion_comes_with_a_reason(rule: str, losses: list[float], why: str) -> None:
    lr, reason = suggest_lr(LRS, losses, rule=rule)
    assert lr is None and why in reason


def test_an_unknown_rule_is_one_line_naming_the_rules() -> None:
    with pytest.raises(SanityError) as err:
        suggest_lr(LRS, _valley_curve(), rule="fastest")
    msg = str(err.value)
    assert "\n" not in msg and "'fastest'" in msg
    assert all(name in msg for name in RULES)


def test_range_test_reports_its_rule_and_every_rules_suggestion() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    default = tunekit.lr_range_test(model, opt, loader, nn.MSELoss(), num_iter=60)
    steep = tunekit.lr_range_test(model, opt, loader, nn.MSELoss(), num_iter=60, rule="steepest")
    assert default.rule == DEFAULT_RULE and steep.rule == "steepest"
    assert set(default.suggestions) == set(RULES) and default.suggestions == steep.suggestions
    assert default.suggestion == default.suggestions[DEFAULT_RULE]
    assert steep.suggestion == steep.suggestions["steepest"]
    assert f"({DEFAULT_RULE})" in default.verdict.measured
    assert json.loads(json.dumps(default.to_dict()))["suggestions"] == default.suggestions


def _lr_find(out: Path, *extra: str) -> dict:
    rc = main(
        [
            "lr-find",
            "--recipe",
            DIGITS,
            "--out",
            str(out),
            "--no-html",
            "--set",
            "data.train_subset=256",
            "--lr-iters",
            "40",
            "--cross-check-iters",
            "10",
            *extra,
        ]
    )
    assert rc == 0
    lr: dict = json.loads((out / "sanity.json").read_text())["lr"]
    return lr


def test_lr_find_reports_the_default_rule_and_takes_another(tmp_path: Path) -> None:
    lr = _lr_find(tmp_path / "default")
    rt = lr["range_test"]
    assert rt["rule"] == DEFAULT_RULE and set(rt["suggestions"]) == set(RULES)
    assert lr["suggestion"] == rt["suggestions"][DEFAULT_RULE]
    assert lr["rule"] == DEFAULT_RULE

    assert lr["chosen"] is not None and lr["chosen_by"]
    if lr["chosen_by"].startswith(f"the {DEFAULT_RULE} suggestion"):
        # Kept in the cross-check, then refined: the refinement's pick around it.
        assert lr["refine"]["start"] == pytest.approx(lr["suggestion"])
    assert lr["chosen"] == lr["refine"]["chosen"]
    # By default each refinement run is as long as the recipe's training: 10 epochs of the
    # 256-image subset's 4 full batches.
    assert lr["refine"]["num_iter"] == 40
    tried = [run["lr"] for run in lr["cross_check"]["runs"]]
    assert all(any(math.isclose(s, t) for t in tried) for s in rt["suggestions"].values() if s)

    other = _lr_find(tmp_path / "valley", "--rule", "valley")
    assert other["range_test"]["rule"] == "valley" and other["rule"] == "valley"
    assert other["suggestion"] == other["range_test"]["suggestions"]["valley"]


def _runs(*falls: tuple[float, float | None]) -> CrossCheckResult:
    runs = [
        ShortRun(
            lr,
            [],
            2.0,
            math.inf if f is None else 2.0 * (1 - f),
            -math.inf if f is None else f,
            f is None,
        )
        for lr, f in falls
    ]
    best = max((r for r in runs if not r.diverged), key=lambda r: r.fall)
    return CrossCheckResult(runs, best.lr, 100, 1e-4, Verdict("lr cross-check", "PASS", "", "", ""))


def test_the_suggestion_stays_unless_its_short_run_is_clearly_worse() -> None:
    close = _runs((0.1, 0.95), (0.03, 0.90), (0.01, 0.80))
    lr, why = recommend(0.03, "steepest", close)
    assert lr == 0.03 and why.startswith("the steepest suggestion")

    worse = _runs((0.1, 0.95), (0.03, 0.60), (0.01, 0.80))
    lr, why = recommend(0.03, "steepest", worse)
    assert lr == 0.1 and "fell by only 60%" in why

    diverged = _runs((3.0, None), (0.1, 0.95), (0.01, 0.80))
    lr, why = recommend(3.0, "steepest", diverged)
    assert lr == 0.1 and "diverged" in why

    lr, why = recommend(None, "valley", close)
    assert lr == 0.1 and "no suggestion" in why


def test_an_unknown_rule_on_the_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["lr-find", "--recipe", DIGITS, "--rule", "fastest"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "'fastest'" in err and "valley" in err
