"""Range refinement between stages: a pure function, tested on plain values."""

from __future__ import annotations

import math

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from tunekit.search import Range, RefineSpec, refine_space


def _lr(low: float = 1e-3, high: float = 1.0, **kw: object) -> Range:
    return Range("optim.lr", FloatDistribution(low, high, log=True), **kw)


def test_refined_range_lies_inside_and_contains_the_top_trials() -> None:
    space = {"optim.lr": _lr()}
    top = [{"optim.lr": 0.05}, {"optim.lr": 0.02}, {"optim.lr": 0.1}]
    new, flags = refine_space(space, top, RefineSpec(top_k=3, margin=0.25))
    r = new["optim.lr"].dist
    assert flags == []
    assert 1e-3 < r.low < 0.02 and 0.1 < r.high < 1.0
    # Padding is a quarter of the top-k spread in log space on each side.
    spread = math.log(0.1) - math.log(0.02)
    assert math.isclose(math.log(r.low), math.log(0.02) - 0.25 * spread)
    assert math.isclose(math.log(r.high), math.log(0.1) + 0.25 * spread)


def test_a_side_held_at_the_old_edge_keeps_the_old_bound_exactly() -> None:
    # exp(log(1e-5)) is 9.999999999999997e-06: the refined low must not fall outside by that.
    space = {
        "optim.weight_decay": Range("optim.weight_decay", FloatDistribution(1e-5, 0.1, log=True))
    }
    top = [{"optim.weight_decay": 3e-5}, {"optim.weight_decay": 2e-5}, {"optim.weight_decay": 1e-4}]
    new, flags = refine_space(space, top, RefineSpec(top_k=3, margin=0.5))
    r = new["optim.weight_decay"].dist
    assert flags == [] and r.low == 1e-5 and r.high < 0.1


def test_best_at_the_edge_is_flagged_and_the_range_widened_past_it() -> None:
    space = {"optim.lr": _lr(1e-3, 1.0)}
    new, flags = refine_space(space, [{"optim.lr": 0.9}, {"optim.lr": 0.5}], RefineSpec(widen=0.5))
    assert len(flags) == 1 and flags[0].side == "high" and flags[0].param == "optim.lr"
    # half the old log width (3 decades) past the old high: 10^1.5
    assert math.isclose(new["optim.lr"].dist.high, 10**1.5, rel_tol=1e-9)
    assert new["optim.lr"].dist.low < 0.5
    assert "high edge" in flags[0].message()


def test_widening_stops_at_the_hard_limit() -> None:
    r = Range("optim.momentum", FloatDistribution(0.5, 0.95), max=0.99)
    new, flags = refine_space({r.name: r}, [{r.name: 0.94}], RefineSpec())
    assert flags and new[r.name].dist.high == 0.99
    r2 = Range("optim.momentum", FloatDistribution(0.5, 0.99), max=0.99)
    new2, flags2 = refine_space({r2.name: r2}, [{r2.name: 0.985}], RefineSpec())
    assert flags2 == [] and new2[r2.name].dist.high == 0.99  # nothing left to widen into


def test_int_categorical_and_scientific_parameters() -> None:
    space = {
        "model.width": Range("model.width", IntDistribution(4, 64)),
        "model.norm": Range("model.norm", CategoricalDistribution(("bn", "gn", "none"))),
        "train.epochs": Range("train.epochs", CategoricalDistribution((1, 2, 3)), "scientific"),
    }
    top = [
        {"model.width": 16, "model.norm": "gn", "train.epochs": 3},
        {"model.width": 16, "model.norm": "bn", "train.epochs": 3},
    ]
    new, _ = refine_space(space, top, RefineSpec())
    w = new["model.width"].dist
    assert isinstance(w.low, int) and isinstance(w.high, int) and w.low < 16 < w.high
    assert new["model.norm"].dist.choices == ("bn", "gn")  # order of the old choices kept
    assert new["train.epochs"] == space["train.epochs"]  # scientific: compared, never narrowed


def test_range_round_trips_through_json() -> None:
    r = Range("model.norm", CategoricalDistribution(("bn", "gn")))
    assert Range.from_dict(r.to_dict()) == r


def test_refinement_candidates_are_complete_trials_then_the_furthest_pruned() -> None:
    import optuna

    from tunekit.search._stages import furthest_first

    study = optuna.create_study(direction="maximize")

    def add(state: str, curve: list[float], value: float | None = None, **attrs: str) -> None:
        trial = optuna.trial.create_trial(
            state=getattr(optuna.trial.TrialState, state),
            value=value,
            params={"x": float(len(study.trials))},
            distributions={"x": optuna.distributions.FloatDistribution(0, 100)},
            intermediate_values=dict(enumerate(curve, start=1)),
            user_attrs=attrs,
        )
        study.add_trial(trial)

    add("COMPLETE", [0.5, 0.8, 0.9], value=0.90)  # 0
    add("PRUNED", [0.7])  # 1: pruned at the first rung, though higher there than 2's
    add("PRUNED", [0.6, 0.85])  # 2: got to the second rung
    add("COMPLETE", [0.6, 0.7, 0.95], value=0.95)  # 3
    add("PRUNED", [0.65, 0.8])  # 4: second rung, lower than 2
    add("PRUNED", [0.9, float("nan")])  # 5: its last value is not finite
    add("PRUNED", [0.99], failure_reason="non-finite training loss")  # 6: diverged
    add("PRUNED", [0.75])  # 7: first rung, highest there
    order = [t.number for t in furthest_first(study.get_trials(), "maximize")]
    assert order == [3, 0, 2, 4, 7, 1]
