"""Conditional parameters: the optimizer as a categorical, each with the settings it takes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from tunekit.cli import main
from tunekit.search import Range
from tunekit.search._objective import load_recipe_data, trial_recipe
from tunekit.search._space import check_points, only_active, sample, space_from_specs
from tunekit.search._study import load_study

REPO = Path(__file__).resolve().parents[2]

#: Each optimizer with the settings that belong to it; the digits recipe is SGD with
#: momentum and Nesterov, which the other optimizers' trials must leave out.
OPTIMIZER_SPACE: dict[str, Any] = {
    "optim.lr": {"type": "log_uniform", "low": 1e-4, "high": 0.5},
    "optim.name": {"type": "categorical", "choices": ["sgd", "adam", "rmsprop", "adagrad"]},
    "optim.momentum": {
        "type": "uniform",
        "low": 0.5,
        "high": 0.95,
        "when": {"optim.name": ["sgd", "rmsprop"]},
    },
    "optim.eps": {"type": "log_uniform", "low": 1e-8, "high": 1e-4, "when": {"optim.name": "adam"}},
    "optim.alpha": {
        "type": "uniform",
        "low": 0.9,
        "high": 0.999,
        "when": {"optim.name": "rmsprop"},
    },
    "optim.lr_decay": {
        "type": "uniform",
        "low": 0,
        "high": 0.01,
        "when": {"optim.name": "adagrad"},
    },
    "optim.nesterov": {"role": "fixed", "value": True, "when": {"optim.name": "sgd"}},
}


def _study(write_study: Callable[..., Path], space: dict[str, Any] = OPTIMIZER_SPACE) -> Path:
    return write_study(space=space, stages=[{"name": "coarse", "trials": 8, "epochs": 1}])


def test_each_trial_samples_the_settings_of_its_optimizer_only(write_study):
    study, _ = load_study(str(_study(write_study)))
    space = space_from_specs(study.space)
    assert "optim.nesterov" not in space  # fixed: set in the recipe, not sampled
    opt = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    own = {
        "sgd": {"optim.momentum"},
        "adam": {"optim.eps"},
        "rmsprop": {"optim.momentum", "optim.alpha"},
        "adagrad": {"optim.lr_decay"},
    }
    names = set()
    for _ in range(40):
        trial = opt.ask()
        params = sample(trial, space)
        name = params["optim.name"]
        names.add(name)
        assert set(params) == {"optim.lr", "optim.name"} | own[name]
        assert trial.params == params  # define-by-run: the trial holds what it suggested
        opt.tell(trial, 0.0)
    assert names == set(own)


def test_trial_recipes_leave_out_the_other_optimizers_settings(write_study):
    study, _ = load_study(str(_study(write_study)))
    data = load_recipe_data(REPO / "recipes" / "digits.yaml")
    assert data["optim"]["momentum"] == 0.9 and data["optim"]["nesterov"] is True
    stage = study.stages[0]

    def recipe(params: dict[str, Any]) -> Any:
        return trial_recipe(study, data, stage, params, file="digits.yaml").optim

    adam = recipe({"optim.name": "adam", "optim.lr": 1e-3, "optim.eps": 1e-6})
    assert adam.name == "adam" and adam.eps == 1e-6
    assert adam.momentum is None and adam.nesterov is None  # the recipe's SGD settings: out
    sgd = recipe({"optim.name": "sgd", "optim.lr": 0.1, "optim.momentum": 0.7})
    assert sgd.momentum == 0.7 and sgd.nesterov is True  # the fixed one, where its condition holds
    # The recipe's momentum was SGD's: an RMSprop trial takes its own (sampled) or the default.
    rms = recipe({"optim.name": "rmsprop", "optim.lr": 1e-3, "optim.alpha": 0.95})
    assert rms.settings() == {"alpha": 0.95, "momentum": 0.0, "centered": False, "eps": 1e-8}
    rms = recipe({"optim.name": "rmsprop", "optim.lr": 1e-3, "optim.momentum": 0.6})
    assert rms.momentum == 0.6


def test_check_points_reach_every_choice_with_its_conditions_met():
    space = {
        "optim.name": Range("optim.name", CategoricalDistribution(("sgd", "rmsprop"))),
        "optim.lr": Range("optim.lr", FloatDistribution(1e-3, 1.0, log=True)),
        "optim.alpha": Range(
            "optim.alpha", FloatDistribution(0.9, 0.99), when=(("optim.name", ("rmsprop",)),)
        ),
    }
    points = check_points(space)
    assert points[0] == {"optim.name": "sgd", "optim.lr": 1e-3}  # the plainest trial first
    assert {"optim.name": "rmsprop", "optim.lr": 1.0, "optim.alpha": 0.99} in points
    assert all(("optim.alpha" in p) == (p["optim.name"] == "rmsprop") for p in points)
    assert only_active(space, {"optim.name": "sgd", "optim.alpha": 0.9}) == {"optim.name": "sgd"}
    r = space["optim.alpha"]
    assert Range.from_dict(r.to_dict()) == r
    old = {k: v for k, v in r.to_dict().items() if k != "when"}  # stored before conditions
    assert Range.from_dict(old).when is None


def _alpha(**spec: Any) -> dict[str, Any]:
    return {"optim.alpha": {"type": "uniform", "low": 0.9, "high": 0.99, **spec}}


BAD: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "condition on an unknown parameter",
        _alpha(when={"optim.nme": "rmsprop"}),
        ["when.optim.nme", "no parameter of the space", "did you mean 'optim.name'"],
    ),
    (
        "condition on a range",
        _alpha(when={"optim.lr": 0.1}),
        ["space.optim.alpha.when.optim.lr", "a log_uniform parameter", "optim.name"],
    ),
    (
        "condition value that is not a choice",
        _alpha(when={"optim.name": "rmsprp"}),
        ["space.optim.alpha.when.optim.name", "'rmsprp' is not among optim.name's choices"],
    ),
    (
        "setting under the wrong optimizer",
        _alpha(when={"optim.name": "sgd"}),
        ["space.optim.alpha", "does not validate", "sgd takes no alpha", "use name: rmsprop"],
    ),
    (
        "unconditional setting of one optimizer",
        _alpha(),
        ["space.optim.alpha", "does not validate", "takes no alpha"],
    ),
]


@pytest.mark.parametrize(("case", "extra", "expected"), BAD, ids=[c[0] for c in BAD])
def test_bad_conditions_are_one_line(
    case: str,
    extra: dict[str, Any],
    expected: list[str],
    write_study: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    space = {
        "optim.lr": {"type": "log_uniform", "low": 1e-3, "high": 0.5},
        "optim.name": {"type": "categorical", "choices": ["sgd", "rmsprop"]},
        **extra,
    }
    path = _study(write_study, space)
    argv = ["search", "--study", str(path), "--out", str(tmp_path / "o"), "--no-progress"]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and str(path) in lines[0], err
    for part in expected:
        assert part in lines[0], lines[0]
    assert not (tmp_path / "o").exists()
