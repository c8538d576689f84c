"""LR range test, suggestion, cross-check by short runs and the update/weight ratio."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from sanity_helpers import digits_cnn, digits_loader, shuffled_loader
from torch import nn

import tunekit
from tunekit.sanity import (
    check_learning_rate,
    cross_check_lrs,
    refine_lr,
    starting_lr,
    suggest_lr,
    update_ratio,
)
from tunekit.sanity._range_test import smooth
from tunekit.testing import BNNet, ConstantNet


def _curve(lrs: np.ndarray, steepest: float) -> list[float]:
    # A loss that falls like a logistic in log LR, fastest at `steepest`, then blows up.
    x = np.log10(lrs)
    x0 = math.log10(steepest)
    return list(
        2.0
        - 1.5 / (1 + np.exp(-4 * (x - x0)))
        + np.where(x > x0 + 1.5, 10 * (x - x0 - 1.5) ** 2, 0)
    )


def test_suggestion_is_the_steepest_fall_against_log_lr() -> None:
    lrs = np.logspace(-7, 1, 100)
    lr, reason = suggest_lr(list(lrs), list(_curve(lrs, 1e-3)), rule="steepest")
    assert lr is not None and 1e-3 / 1.3 < lr < 1e-3 * 1.3
    assert "steepest" in reason


def test_non_finite_points_are_dropped_and_said() -> None:
    lrs = np.logspace(-7, 1, 100)
    losses = _curve(lrs, 1e-2)
    losses[30] = math.nan
    losses[-3:] = [math.inf] * 3
    smoothed = smooth(losses, 0.0)
    assert smoothed[30] is None
    lr, reason = suggest_lr(list(lrs), smoothed, rule="steepest")
    assert lr is not None and 1e-2 / 1.3 < lr < 1e-2 * 1.3
    assert "4 non-finite points dropped" in reason


@pytest.mark.parametrize(
    ("losses", "why"),
    [
        ([2.0] * 100, "did not fall"),
        ([math.nan] * 100, "too few finite points"),
        ([2.0] * 8, "too few"),
    ],
)
def test_no_suggestion_comes_with_a_reason_not_a_crash(losses: list[float], why: str) -> None:
    lrs = list(np.logspace(-7, 1, len(losses)))
    lr, reason = suggest_lr(lrs, smooth(losses, 0.9))
    assert lr is None and why in reason


def _regression_loader() -> torch.utils.data.DataLoader:
    # Least squares: plain gradient descent diverges for LR > 2 / (largest curvature),
    # so a sweep to 10 must blow up.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(256, 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)


def test_range_test_sweeps_exponentially_and_stops_when_the_loss_explodes() -> None:
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    res = tunekit.lr_range_test(model, opt, _regression_loader(), nn.MSELoss(), num_iter=80)
    assert res.lrs[0] == pytest.approx(1e-7)
    ratios = np.array(res.lrs[1:]) / np.array(res.lrs[:-1])
    assert np.allclose(ratios, (10 / 1e-7) ** (1 / 79))
    assert len(res.lrs) < 80 and ("passed 4x" in res.stop_reason or "not finite" in res.stop_reason)
    assert res.suggestion is not None and 1e-3 < res.suggestion < 2
    assert res.verdict.status == "PASS"
    json.dumps(res.to_dict(), allow_nan=False)
    fig = res.plot()
    assert isinstance(fig, go.Figure) and len(fig.data) == 3  # loss, smoothed, suggestion marker
    assert fig.data[2].x == (res.suggestion,)
    assert res.plot_data()["suggestion"] == res.suggestion


def test_a_model_that_cannot_learn_gets_no_suggestion_and_a_warning() -> None:
    model = ConstantNet()
    with torch.no_grad():
        model.fc.weight.zero_()  # starts at the best a constant can do on balanced classes
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    res = tunekit.lr_range_test(
        model, opt, shuffled_loader(), nn.CrossEntropyLoss(), num_iter=40, end_lr=1e-2
    )
    assert res.suggestion is None
    assert res.verdict.status == "WARN" and res.verdict.measured == "no suggestion"
    assert "fell by only" in res.reason or "did not fall" in res.reason


def test_cross_check_picks_the_lr_whose_loss_falls_most_and_flags_divergence() -> None:
    torch.manual_seed(0)
    model = tunekit.testing.TinyMLP(in_features=64, num_classes=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    res = cross_check_lrs(
        model, opt, shuffled_loader(), nn.CrossEntropyLoss(), lrs=[30.0, 0.1, 1e-4], num_iter=30
    )
    runs = {r.lr: r for r in res.runs}
    assert runs[30.0].diverged and not runs[0.1].diverged
    assert runs[0.1].fall > runs[1e-4].fall > -0.05
    assert res.chosen == 0.1 and res.verdict.status == "PASS"
    assert "diverged" in res.verdict.reason
    json.dumps(res.to_dict(), allow_nan=False)
    assert len(res.plot().data) == 3


def test_update_ratio_grows_with_the_lr() -> None:
    torch.manual_seed(0)
    model = BNNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    small = update_ratio(model, opt, shuffled_loader(), nn.CrossEntropyLoss(), lr=1e-2, steps=4)
    large = update_ratio(model, opt, shuffled_loader(), nn.CrossEntropyLoss(), lr=1e-1, steps=4)
    assert small.median is not None and large.median is not None
    assert 5 < large.median / small.median < 20  # plain SGD: the step is lr x gradient
    assert set(small.ratios) == {"conv", "bn", "fc"}
    assert large.verdict.status == "PASS", large.verdict
    tiny = update_ratio(model, opt, shuffled_loader(), nn.CrossEntropyLoss(), lr=1e-9, steps=4)
    assert tiny.verdict.status == "WARN" and "raise the LR" in tiny.verdict.fix


def test_check_learning_rate_gives_a_search_space_around_the_chosen_lr() -> None:
    torch.manual_seed(0)
    model = BNNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    res = check_learning_rate(
        model,
        opt,
        shuffled_loader(),
        nn.CrossEntropyLoss(),
        num_iter=40,
        cross_check_iter=20,
        ratio_steps=4,
    )
    assert res.chosen is not None
    lo, hi = res.search_space["lr"]
    assert lo == pytest.approx(res.chosen / 10) and hi == pytest.approx(res.chosen * 10)
    assert res.search_space["weight_decay"] == [1e-4, 1e-1]  # decoupled decay for AdamW
    tried = [r.lr for r in res.cross_check.runs]
    assert {0.1, 0.01, 1e-3, 1e-4} <= set(tried)
    if res.range_test.suggestion is not None:
        assert any(math.isclose(t, res.range_test.suggestion) for t in tried)
        # AdamW: the choice starts from half the suggestion, which has a short run of its own.
        assert res.start == pytest.approx(res.range_test.suggestion / 2)
        assert any(math.isclose(t, res.start) for t in tried)
    # Refined around the LR the cross-check settled on (the start when it held up), judged on
    # the training loss (no held-out data was given).
    assert res.refine is not None and res.refine.judged_on == "training loss"
    settled = res.start if res.chosen_by.startswith("half the steepest") else res.cross_check.chosen
    assert res.refine.start == settled
    assert [r.lr for r in res.refine.runs] == pytest.approx([settled * k for k in (0.5, 1, 2)])
    assert res.chosen == res.refine.chosen
    assert res.ratio is not None and res.ratio.lr == res.chosen


def test_refinement_keeps_the_lr_whose_model_does_best_on_held_out_data() -> None:
    from torch.utils.data import DataLoader

    from tunekit.config import DataConfig
    from tunekit.data import build_data

    model, loader = digits_cnn(), digits_loader()
    held_out = list(DataLoader(build_data(DataConfig(name="digits", image_size=16)).val, 64))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = nn.CrossEntropyLoss()
    res = refine_lr(
        model,
        opt,
        loader,
        loss,
        start=0.1,
        shares=(1e-3, 1.0, 100.0),
        num_iter=30,
        held_out=held_out,
    )
    runs = {round(r.lr, 6): r for r in res.runs}
    assert list(runs) == [1e-4, 0.1, 10.0]  # from the smallest LR up
    scores = {lr: r.held_out for lr, r in runs.items()}
    assert None not in scores.values(), scores
    assert scores[0.1] < 0.5 * scores[1e-4]  # 1e-4 barely moves in 30 steps
    assert scores[0.1] < 0.5 * scores[10.0]  # 10 lands near chance (BN keeps it finite)
    # The held-out top-1 comes beside the loss: 0.1 classifies the digits, 1e-4 barely moved.
    assert runs[0.1].held_out_top1 is not None and runs[0.1].held_out_top1 > 0.8
    assert runs[1e-4].held_out_top1 is not None and runs[1e-4].held_out_top1 < 0.5
    assert "held-out top-1 (loss) per LR" in res.verdict.reason
    assert res.plot_data()["score"][1] == runs[0.1].held_out_top1  # the figure shows the judge
    assert res.chosen == pytest.approx(0.1) and res.judged_on == "held-out top-1"
    assert res.verdict.status == "PASS"
    # Every run started from the same state, and the model and optimizer are as they were.
    assert {r.losses[0] for r in res.runs} == {res.runs[0].losses[0]}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert opt.param_groups[0]["lr"] == 0.05
    json.dumps(res.to_dict(), allow_nan=False)
    assert len(res.plot().data) == 2  # the scores and the chosen point

    bare = refine_lr(model, opt, loader, loss, start=0.1, shares=(1e-3, 1.0), num_iter=30)
    assert bare.judged_on == "training loss" and bare.chosen == pytest.approx(0.1)
    assert all(r.held_out is None and r.held_out_top1 is None for r in bare.runs)
    with pytest.raises(tunekit.sanity.SanityError, match="start=0 is not allowed"):
        refine_lr(model, opt, loader, loss, start=0)

    torch.manual_seed(0)
    mlp = tunekit.testing.TinyMLP(in_features=64, num_classes=4)
    sgd = torch.optim.SGD(mlp.parameters(), lr=0.01)
    blown = refine_lr(mlp, sgd, shuffled_loader(), loss, start=1e6, shares=(1.0, 10.0), num_iter=10)
    assert all(r.diverged for r in blown.runs) and blown.chosen is None
    assert blown.verdict.status == "FAIL" and "diverged" in blown.verdict.reason


def test_the_refinement_judges_on_held_out_top1_with_ties_to_the_lower_loss() -> None:
    from tunekit.sanity._refine import RefineRun, judge

    def run(lr: float, loss: float, top1: float | None, diverged: bool = False) -> RefineRun:
        return RefineRun(lr, [1.0], 0.5, loss, diverged, top1)

    # The loss leans to the higher LR (a more confident model); the top-1 decides.
    runs = [run(0.05, 0.30, 0.95), run(0.1, 0.20, 0.97), run(0.2, 0.15, 0.96)]
    assert judge(runs, held_out=True) == (0.1, "held-out top-1")
    tied = [run(0.05, 0.30, 0.97), run(0.1, 0.20, 0.97), run(0.2, 0.25, 0.96)]
    assert judge(tied, held_out=True) == (0.1, "held-out top-1")  # the tie: the lower loss
    # A diverged run is out whatever it scored; with no top-1 (a detector), the loss decides.
    assert judge([run(0.1, 0.2, 0.9), run(0.2, 0.1, 0.99, True)], held_out=True)[0] == 0.1
    losses = [run(0.05, 0.30, None), run(0.1, 0.20, None)]
    assert judge(losses, held_out=True) == (0.1, "held-out loss")
    bare = [RefineRun(0.05, [1.0], 0.4, None, False), RefineRun(0.1, [1.0], 0.3, None, False)]
    assert judge(bare, held_out=False) == (0.1, "training loss")
    assert judge([run(0.1, 0.2, 0.9, True)], held_out=True) == (None, "held-out loss")


def test_held_out_scores_give_a_top1_for_class_indices_only() -> None:
    from tunekit.sanity import Objective, held_out_scores

    torch.manual_seed(0)
    model, x = nn.Linear(4, 3), torch.randn(8, 4)
    classes = [(x, torch.arange(8) % 3)]
    scores = held_out_scores(model, classes, Objective(nn.CrossEntropyLoss()), torch.device("cpu"))
    expected = (model(x).argmax(1) == torch.arange(8) % 3).float().mean().item()
    assert scores.top1 == pytest.approx(expected) and scores.loss > 0
    tags = [(x, (torch.rand(8, 3) > 0.5).float())]  # multi-label: the loss judges
    scores = held_out_scores(model, tags, Objective(nn.BCEWithLogitsLoss()), torch.device("cpu"))
    assert scores.top1 is None and scores.loss > 0
    assert model.training  # the mode is put back


def test_the_refinement_runs_as_long_as_the_recipes_training_up_to_a_cap() -> None:
    from tunekit.config import load_recipe
    from tunekit.sanity._recipe import REFINE_MAX_ITERS, refine_length

    digits = Path(__file__).resolve().parents[2] / "recipes" / "digits.yaml"
    batches = list(range(23))  # any sized iterable stands for the loader
    assert refine_length(load_recipe(digits, ["train.epochs=2"]), batches) == 46
    assert refine_length(load_recipe(digits, ["train.epochs=100"]), batches) == REFINE_MAX_ITERS
    capped = load_recipe(digits, ["train.epochs=3", "train.max_steps_per_epoch=4"])
    assert refine_length(capped, batches) == 12
    assert refine_length(load_recipe(digits, ["train.epochs=1"]), [0, 1]) == 10  # the floor
    assert refine_length(load_recipe(digits), iter(batches)) == REFINE_MAX_ITERS  # no length


def test_refine_iter_0_chooses_without_the_refinement() -> None:
    torch.manual_seed(0)
    model = BNNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    res = check_learning_rate(
        model,
        opt,
        shuffled_loader(),
        nn.CrossEntropyLoss(),
        num_iter=30,
        cross_check_iter=10,
        refine_iter=0,
        held_out=shuffled_loader(seed=1),
        ratio_steps=2,
    )
    assert res.refine is None and res.to_dict()["refine"] is None
    assert res.chosen in (res.start, res.cross_check.chosen)
    assert "refined" not in res.chosen_by
    assert [v.check for v in res.verdicts] == [
        "lr range test",
        "lr cross-check",
        "update/weight ratio",
    ]


def test_the_start_is_the_suggestion_halved_for_adam_family_optimizers_only() -> None:
    params = list(nn.Linear(2, 2).parameters())
    for opt, share in [
        (torch.optim.SGD(params, lr=0.1, momentum=0.9), 1.0),
        (torch.optim.RMSprop(params), 1.0),
        (torch.optim.AdamW(params), 0.5),
        (torch.optim.Adam(params), 0.5),
        (torch.optim.NAdam(params), 0.5),
    ]:
        lr, what = starting_lr(0.02, "steepest", opt)
        assert lr == pytest.approx(0.02 * share), type(opt).__name__
        assert what == (
            "the steepest suggestion"
            if share == 1
            else f"half the steepest suggestion ({type(opt).__name__})"
        )
    assert starting_lr(None, "valley", torch.optim.Adam(params)) == (None, "the valley suggestion")


@pytest.mark.slow
def test_digits_suggestion_is_within_3x_of_the_best_lr_of_a_grid_of_short_runs() -> None:
    """The range test's suggestion against the LR that trains best in short full runs (2 epochs)."""
    from tunekit.config import load_recipe
    from tunekit.run import build_trainer

    model, loader = digits_cnn(), digits_loader()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    res = tunekit.lr_range_test(model, opt, loader, nn.CrossEntropyLoss())
    assert res.suggestion is not None

    grid = [0.03, 0.1, 0.3, 1.0]
    scores = {}
    for lr in grid:
        recipe = load_recipe(
            Path(__file__).resolve().parents[2] / "recipes" / "digits.yaml",
            [
                f"optim.lr={lr}",
                "train.epochs=2",
                "schedule.warmup_epochs=0",
                "data.augment.random_crop_padding=0",
            ],
        )
        with tempfile.TemporaryDirectory() as tmp:
            trainer, _ = build_trainer(recipe, Path(tmp), progress=False)
            trainer.train()
        scores[lr] = trainer.history[-1]["val/loss"]
    best = min(scores, key=lambda k: scores[k])
    assert best not in (grid[0], grid[-1]), scores  # the grid brackets the best LR
    assert best / 3 <= res.suggestion <= best * 3, (res.suggestion, scores)


def test_gradient_clipping_of_the_objective_applies_to_every_update() -> None:
    from tunekit.sanity import Objective

    torch.manual_seed(0)
    model = BNNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    free = update_ratio(model, opt, shuffled_loader(), nn.CrossEntropyLoss(), lr=0.1, steps=2)
    clipped = update_ratio(
        model,
        opt,
        shuffled_loader(),
        lr=0.1,
        steps=2,
        objective=Objective(nn.CrossEntropyLoss(), grad_clip=1e-4),
    )
    assert free.median is not None and clipped.median is not None
    assert clipped.median < free.median / 100
