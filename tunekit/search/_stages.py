"""Coarse → fine → further rounds → repeats: each (stage, cell) is one Optuna study on the storage.

A study's scientific parameters split it into cells: each of their values, or
each combination of several (the cartesian product of their choices). Every
cell gets its own nuisance tuning with the same budget, so the comparison the
study makes is between cells each at its best. A (stage, cell) study is named
``<study>.<stage>.<cell key>`` (``shapes.coarse.length_multiplier=2``), or
``<study>.<stage>`` when there are no scientific parameters, so that its pruner
compares trials of the same length and the same cell, its sampler sees only
its own ranges, and optuna-dashboard lists them side by side.

A cell's values enter each of its trials through a one-choice categorical
range (``length_multiplier: {2}``) rather than Optuna's PartialFixedSampler:
the cell's stored ranges then say its value, ``trial.params`` hold it as they
hold any parameter (conditions, summaries and reports read them there), and
enqueued and retried trials carry it with no experimental sampler wrapper.

A (stage, cell)'s ranges are computed once from the same cell's trials of the
previous stage and stored in its study (user attribute ``tunekit:space``), so
every worker, on any machine and after any restart, samples from the same
ranges. The worker that creates the study computes them (Optuna refuses a
second study of the same name, which makes creation the one atomic step a
storage offers); the others wait for them.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from ._builders import build_pruner, build_sampler, grid_sampler
from ._space import EdgeFlag, Range, Space, recipe_values, refine_space, space_from_specs
from ._study import PrunerSpec, RefineSpec, StageSpec, Study

SPACE_ATTR = "tunekit:space"
FLAGS_ATTR = "tunekit:flags"
STARTED_ATTR = "tunekit:started"
SEEDED_ATTR = "tunekit:seeded"
#: A trial's system attribute: it was created past its cell's plan and never ran (see
#: :func:`over_plan`). Such trials are left out of every count, list and report.
SURPLUS_ATTR = "tunekit:surplus"
#: A repeat cell's source: the stage and trial it trains again (None: nothing to repeat).
REPEAT_ATTR = "tunekit:repeat_of"
#: The recipe field a repeat trial varies.
SEED_PARAM = "seed"
#: Repeat statistics: the confidence of the interval and the test's level.
CONFIDENCE = 0.95
ALPHA = 0.05


@dataclass(frozen=True)
class Cell:
    """One value (or combination of values) of the scientific parameters.

    ``key`` names it in study names, directories and summaries:
    ``length_multiplier=2``, or ``init=scratch,length_multiplier=2`` for two
    parameters (each by the last part of its name unless two share it), ``""``
    for a study without scientific parameters.
    """

    index: int = 0
    values: tuple[tuple[str, Any], ...] = ()
    key: str = ""

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.values)


NO_CELL = Cell()


def plan_cells(study: Study) -> list[Cell]:
    """Every cell of the study, in a stable order (the product of the choices, by key name)."""
    names = [n for n, p in study.space.items() if p.role == "scientific"]
    if not names:
        return [NO_CELL]
    short = {n: n.rsplit(".", 1)[-1] for n in names}
    if len(set(short.values())) < len(names):
        short = {n: n for n in names}
    names.sort(key=lambda n: short[n])
    choices = [study.space[n].choices or [] for n in names]
    cells = []
    for i, combo in enumerate(itertools.product(*choices)):
        key = ",".join(f"{short[n]}={_text(v)}" for n, v in zip(names, combo))
        cells.append(Cell(i, tuple(zip(names, combo)), key))
    return cells


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class Stage:
    """One planned round (``cell`` NO_CELL), or one cell of it: its place, spec and study name."""

    index: int
    spec: StageSpec
    study_name: str
    cell: Cell = field(default=NO_CELL)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        """``coarse``, or ``coarse/length_multiplier=2`` for a cell."""
        return f"{self.name}/{self.cell.key}" if self.cell.key else self.name

    @property
    def dir_name(self) -> str:
        """The cell's folder under its stage's (``""`` without cells)."""
        return self.cell.key.replace("/", "_").replace(" ", "_")


def plan_stages(study: Study) -> list[Stage]:
    """The listed stages, then ``rounds.extra`` more copies of the last one (``fine2``, ...)."""
    specs = list(study.stages)
    last = specs[-1]
    for k in range(study.rounds.extra):
        refine = last.refine or RefineSpec()
        specs.append(last.model_copy(update={"name": f"{last.name}{k + 2}", "refine": refine}))
    return [Stage(i, s, f"{study.name}.{s.name}") for i, s in enumerate(specs)]


@dataclass(frozen=True)
class StageCounts:
    """Where a stage's trials stand; ``accounted`` is what counts against its budget."""

    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    retried: int  # failed trials whose parameters were enqueued again

    @property
    def accounted(self) -> int:
        return (
            self.complete + self.pruned + self.running + self.waiting + self.failed - self.retried
        )


def live_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count: every one but those created past their cell's plan."""
    return [t for t in trials if not t.system_attrs.get(SURPLUS_ATTR)]


def count_trials(trials: list[FrozenTrial]) -> StageCounts:
    """Counts by state; a failed trial that was retried counts through its retry instead."""
    tally = _Tally()
    for t in trials:
        tally.add(t)
    return tally.counts()


def _sum_counts(counts: list[StageCounts]) -> StageCounts:
    return StageCounts(
        *(sum(getattr(c, f) for c in counts) for f in StageCounts.__dataclass_fields__)
    )


@dataclass
class _Tally:
    """Trials added one by one, by state (what :func:`count_trials` counts)."""

    by_state: dict[TrialState, int] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)
    replaced: set[int] = field(default_factory=set)  # numbers named in retry_history

    def add(self, t: FrozenTrial) -> None:
        if t.system_attrs.get(SURPLUS_ATTR):
            return  # never ran: see StagedSearch.over_plan
        self.replaced.update(t.system_attrs.get("retry_history", []))
        self.by_state[t.state] = self.by_state.get(t.state, 0) + 1
        if t.state == TrialState.FAIL:
            self.failed.add(t.number)

    def copy(self) -> _Tally:
        return _Tally(dict(self.by_state), set(self.failed), set(self.replaced))

    def counts(self) -> StageCounts:
        n = self.by_state.get
        return StageCounts(
            complete=n(TrialState.COMPLETE, 0),
            pruned=n(TrialState.PRUNED, 0),
            failed=n(TrialState.FAIL, 0),
            running=n(TrialState.RUNNING, 0),
            waiting=n(TrialState.WAITING, 0),
            retried=len(self.failed & self.replaced),
        )


class _KeptTally:
    """One cell's counts, kept between calls so that a worker's check per trial is not a
    count of every trial of the cell.

    A finished trial never changes what it counts as: its state is final, a surplus trial
    is marked before it is told, and a retry names the trials it replaces when it is
    enqueued. So the leading run of finished trials is counted once, and each call counts
    only the trials from the first unfinished one on.
    """

    def __init__(self) -> None:
        self.done = 0  # trials 0 .. done-1 are finished and counted in self.finished
        self.finished = _Tally()

    def count(self, trials: list[FrozenTrial], upto: int | None = None) -> StageCounts:
        """``count_trials(trials)``, or of the trials numbered ``upto`` or less."""
        if upto is not None and upto < self.done:
            return count_trials([t for t in trials if t.number <= upto])
        # Storages list a study's trials by number; anything else is counted afresh each call.
        while (
            self.done < len(trials)
            and trials[self.done].number == self.done
            and trials[self.done].state.is_finished()
        ):
            self.finished.add(trials[self.done])
            self.done += 1
        tally = self.finished.copy()
        for t in trials[self.done :]:
            if upto is None or t.number <= upto:
                tally.add(t)
        return tally.counts()


def ranked(trials: list[FrozenTrial], direction: str) -> list[FrozenTrial]:
    """Complete trials, best first (pruned ones are not candidates: they stopped early)."""
    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    return sorted(done, key=lambda t: float(t.value or 0.0), reverse=direction == "maximize")


def furthest_first(trials: list[FrozenTrial], direction: str) -> list[FrozenTrial]:
    """Complete trials best first, then pruned ones by how far they got, then by their value there.

    Successive halving lets a ninth of a stage's trials run to the end; refining
    around those two or three alone would throw away what the rungs learned. A
    trial that survived to a later rung beat the others at every rung before it,
    so it is the next candidate, as in Hyperband's own ranking.
    """
    done = ranked(trials, direction)
    sign = 1.0 if direction == "maximize" else -1.0
    pruned: list[tuple[int, float, FrozenTrial]] = []
    for t in trials:
        step = t.last_step
        # A diverged trial (failure_reason) is not a place to refine around.
        if t.state != TrialState.PRUNED or t.user_attrs.get("failure_reason") or step is None:
            continue
        value = t.intermediate_values[step]
        if math.isfinite(value):
            pruned.append((step, sign * value, t))
    pruned.sort(key=lambda p: (p[0], p[1]), reverse=True)
    return done + [t for _, _, t in pruned]


# Metrics that are the fraction of validation items scored right: their noise is binomial.
_PROPORTION = re.compile(r"(^|/)(top\d+|acc|accuracy)$")


def within_noise(trials: list[FrozenTrial], metric: str, direction: str) -> dict[str, Any] | None:
    """The complete trials that score within two standard errors of the best one.

    A top-1 measured on n items has a standard error of sqrt(p(1-p)/n); trials
    closer to the best than two of them cannot be told apart on this validation
    set, and a rerun with another seed reorders them. None for metrics that are
    not such a fraction (a loss, AP) or when the validation size is unknown.
    """
    if not _PROPORTION.search(metric):
        return None
    top = ranked(trials, direction)
    n = top[0].user_attrs.get("val_size") if top else None
    if not n:
        return None
    best = float(top[0].value or 0.0)
    # At 0 or 1 the formula gives 0; half an item of doubt keeps the band honest.
    p = min(max(best, 0.5 / n), 1 - 0.5 / n)
    se = math.sqrt(p * (1 - p) / n)
    close = [t.number for t in top if abs(float(t.value or 0.0) - best) <= 2 * se + 1e-12]
    return {"val_size": int(n), "se": se, "trials": close}


class StagedSearch:
    """A study's stages and cells on one storage: their Optuna studies, ranges and progress.

    Every worker builds one of these; they agree through the storage alone.
    Methods that address one Optuna study take a cell of a stage (:meth:`units`);
    :meth:`trials` and :meth:`counts` also take a whole stage (all its cells).
    """

    def __init__(
        self,
        study: Study,
        storage: BaseStorage,
        *,
        base_space: Space | None = None,
    ) -> None:
        self.study = study
        self.storage = storage
        self.stages = plan_stages(study)
        self.cells = plan_cells(study)
        self.base_space = base_space if base_space is not None else space_from_specs(study.space)
        self._studies: dict[str, optuna.Study] = {}
        self._study_ids: dict[str, int] = {}
        self._trial_ids: dict[tuple[str, int], int] = {}
        self._tallies: dict[str, _KeptTally] = {}
        self._looked_at: dict[str, float] = {}
        # What never changes once stored: read once per worker, not once per trial.
        self._spaces: dict[str, Space] = {}
        self._started_at: float | None = None

    # -- stages and cells ---------------------------------------------------

    def units(self, stage: Stage) -> list[Stage]:
        """The stage's cells, each with its own study name (the stage itself without cells)."""
        return [
            replace(
                stage,
                cell=c,
                study_name=f"{stage.study_name}.{c.key}" if c.key else stage.study_name,
            )
            for c in self.cells
        ]

    def all_units(self) -> list[Stage]:
        return [u for st in self.stages for u in self.units(st)]

    def _of(self, stage: Stage) -> list[Stage]:
        return self.units(stage) if stage.cell is NO_CELL or not stage.cell.key else [stage]

    def find_unit(self, label: str) -> Stage | None:
        """The cell of a stage by its :attr:`Stage.label` (``coarse/length_multiplier=2``)."""
        return next((u for u in self.all_units() if u.label == label), None)

    def _earlier(self, unit: Stage) -> list[Stage]:
        """The same cell of the earlier searching (non-repeat) stages, latest first."""
        return [
            self.units(st)[unit.cell.index]
            for st in reversed(self.stages[: unit.index])
            if not st.spec.is_repeat
        ]

    # -- the Optuna study of each (stage, cell) -------------------------------

    def _create(self, unit: Stage, *, load: bool) -> optuna.Study:
        spec = unit.spec
        # The same seed in every cell of a stage: random and quasi-random samplers draw the
        # same nuisance values in each cell (common random numbers make a fairer comparison).
        seed = self.study.seed * 1000 + unit.index
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = build_sampler(spec.sampler, seed, n_startup=max(2, spec.trials // 4))
            pruner = build_pruner(spec.pruner, spec.steps)
            if load:
                # Loaded, not created: a reader (a report, the live table) writes nothing.
                return optuna.load_study(
                    study_name=unit.study_name,
                    storage=self.storage,
                    sampler=sampler,
                    pruner=pruner,
                )
            return optuna.create_study(
                storage=self.storage,
                study_name=unit.study_name,
                direction=self.study.direction,
                sampler=sampler,
                pruner=pruner,
            )

    def _open(self, unit: Stage) -> tuple[optuna.Study, bool]:
        """The cell's study, and whether this call created it (only one caller ever does)."""
        if unit.study_name in self._studies:
            return self._studies[unit.study_name], False
        try:
            s, created = self._create(unit, load=False), True
        except DuplicatedStudyError:
            s, created = self._create(unit, load=True), False
        self._studies[unit.study_name] = s
        return s, created

    def optuna_study(self, unit: Stage) -> optuna.Study:
        return self._open(unit)[0]

    def existing(self, unit: Stage) -> optuna.Study | None:
        """The cell's study if some worker has created it (without creating it)."""
        if unit.study_name not in self._studies:
            try:
                # A study once created stays: only the first sighting asks the storage.
                self.storage.get_study_id_from_name(unit.study_name)
            except KeyError:
                return None
            self._studies[unit.study_name] = self._create(unit, load=True)
        return self._studies[unit.study_name]

    def trial_id(self, unit: Stage, number: int) -> int:
        """The storage's id of the cell's trial ``number`` (what heartbeats and retries use)."""
        key = (unit.study_name, number)
        if key not in self._trial_ids:
            # An id never changes: a trial's writes after the first ask the storage nothing.
            if unit.study_name not in self._study_ids:
                self._study_ids[unit.study_name] = self.storage.get_study_id_from_name(
                    unit.study_name
                )
            self._trial_ids[key] = self.storage.get_trial_id_from_study_id_trial_number(
                self._study_ids[unit.study_name], number
            )
        return self._trial_ids[key]

    def trials(self, stage: Stage) -> list[FrozenTrial]:
        """The trials of one cell, or of every cell of a stage (each cell's numbered from 0)."""
        out: list[FrozenTrial] = []
        for u in self._of(stage):
            s = self.existing(u)
            out += live_trials(s.get_trials(deepcopy=False)) if s is not None else []
        return out

    def over_plan(self, unit: Stage, number: int) -> bool:
        """Whether the cell's trial ``number``, just taken by this worker, lies past the plan.

        Two workers can both see a cell one trial short of its plan and both ask for a
        trial; the storage numbers them in order, so the trial whose count up to its own
        number exceeds the plan is the extra one. Optuna has no atomic "ask if fewer than N"
        (its ``MaxTrialsCallback`` overshoots the same way), and the trial numbers are the one
        order every storage agrees on. The same count drops a queued trial enqueued twice
        (a retry, a seeded or a repeat trial) by two workers preparing a stage at once.
        """
        s = self.optuna_study(unit)
        return self._count(unit, s, upto=number).accounted > self.planned(unit)

    def counts(self, stage: Stage) -> StageCounts:
        """The trials of one cell, or of every cell of a stage, by state (see :class:`StageCounts`)."""
        counts = []
        for u in self._of(stage):
            s = self.existing(u)
            if s is not None:
                counts.append(self._count(u, s))
        return _sum_counts(counts)

    def _count(self, unit: Stage, s: optuna.Study, upto: int | None = None) -> StageCounts:
        tally = self._tallies.setdefault(unit.study_name, _KeptTally())
        return tally.count(s.get_trials(deepcopy=False), upto)

    def due(self, unit: Stage, every_s: float) -> bool:
        """True at most once per ``every_s`` for each cell (for checks that need no more)."""
        now = time.monotonic()
        if now - self._looked_at.get(unit.study_name, -math.inf) < every_s:
            return False
        self._looked_at[unit.study_name] = now
        return True

    def planned(self, unit: Stage) -> int:
        """The cell's planned trials: the stage's ``trials``, or a repeat's seeds (0 when the
        cell has no complete trial to repeat)."""
        repeat = unit.spec.repeat
        if repeat is None:
            return unit.spec.trials
        s = self.existing(unit)
        if s is not None and REPEAT_ATTR in s.user_attrs and s.user_attrs[REPEAT_ATTR] is None:
            return 0
        return repeat.seeds

    # -- ranges -------------------------------------------------------------

    def prepare(self, unit: Stage, *, wait_s: float | None = None) -> None:
        """Creates the cell's study, its ranges and its first trials (seeded or repeats), once.

        The worker that creates the study does it; another waits until the ranges are
        stored (they are stored last), or does it itself after ``wait_s`` (the liveness
        grace), when the creator died half-way: every step is safe to do twice.
        """
        s, created = self._open(unit)
        if not created:
            deadline = time.monotonic() + (
                self.study.liveness.grace_s if wait_s is None else wait_s
            )
            while SPACE_ATTR not in s.user_attrs:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            else:
                return
        space, flags = self._compute_space(unit)
        if unit.spec.is_repeat:
            self._enqueue_repeats(unit, space)
        else:
            self.seed_best(unit, space)
        self._store(unit, space, flags)

    def space(self, unit: Stage) -> Space:
        """The cell's ranges: stored, or computed now from its earlier stage and stored."""
        if unit.study_name in self._spaces:
            return self._spaces[unit.study_name]
        s = self.optuna_study(unit)
        stored = s.user_attrs.get(SPACE_ATTR)
        if stored is not None:
            self._spaces[unit.study_name] = {n: Range.from_dict(d) for n, d in stored.items()}
            self._use_grid(unit, self._spaces[unit.study_name])
            return self._spaces[unit.study_name]
        space, flags = self._compute_space(unit)
        self._store(unit, space, flags)
        return space

    def _store(self, unit: Stage, space: Space, flags: list[EdgeFlag]) -> None:
        # Every worker computes the same ranges from the same finished trials, so a race
        # between two writers stores the same value. The ranges go last: they say "ready".
        s = self.optuna_study(unit)
        s.set_user_attr(
            FLAGS_ATTR, [f.__dict__ | {"old": list(f.old), "new": list(f.new)} for f in flags]
        )
        s.set_user_attr(SPACE_ATTR, {name: r.to_dict() for name, r in space.items()})
        self._spaces[unit.study_name] = space
        self._use_grid(unit, space)

    def _use_grid(self, unit: Stage, space: Space) -> None:
        # A grid is built from the cell's ranges, known only now (see _builders.SAMPLERS).
        if unit.spec.sampler == "grid" and not unit.spec.is_repeat:
            seed = self.study.seed * 1000 + unit.index
            self.optuna_study(unit).sampler = grid_sampler(space, seed)

    def _compute_space(self, unit: Stage) -> tuple[Space, list[EdgeFlag]]:
        if unit.spec.is_repeat:
            return self._repeat_space(unit), []
        earlier = self._earlier(unit)
        if not earlier:
            if unit.cell.index == 0:
                s = self.optuna_study(unit)
                if STARTED_ATTR not in s.user_attrs:
                    s.set_user_attr(STARTED_ATTR, time.time())
            return self.cell_space(unit.cell), []
        prev = earlier[0]
        prev_space = self.space(prev)
        if unit.spec.refine is None:
            return prev_space, []
        # The cell's own trials only: another cell's best nuisance values are not this one's.
        top = furthest_first(self.trials(prev), self.study.direction)[: unit.spec.refine.top_k]
        return refine_space(prev_space, [t.params for t in top], unit.spec.refine)

    def cell_space(self, cell: Cell) -> Space:
        """The study's first ranges with each scientific parameter held at the cell's value."""
        space = dict(self.base_space)
        for name, value in cell.values:
            space[name] = replace(space[name], dist=CategoricalDistribution((value,)))
        return space

    def flags(self, unit: Stage) -> list[EdgeFlag]:
        s = self.existing(unit)
        raw = s.user_attrs.get(FLAGS_ATTR, []) if s is not None else []
        return [
            EdgeFlag(f["param"], f["side"], f["best"], tuple(f["old"]), tuple(f["new"]))
            for f in raw
        ]

    def seed_best(self, unit: Stage, space: Space | None = None) -> None:
        """Enqueues the cell's best parameters of its earlier stage as its first trial (once).

        Not when this stage trains as the earlier one did (same epochs, same
        overrides; further rounds, or a fine stage that only narrows ranges): the
        trial would repeat the best one, the same run under the same seed, and
        spend a whole trial to learn nothing.
        """
        earlier = self._earlier(unit)
        if not earlier or not unit.spec.seed_best or unit.spec.is_repeat:
            return
        if unit.spec.sampler == "grid":
            return  # a grid runs its own points, each once
        prev = earlier[0]
        if (unit.spec.epochs, unit.spec.steps, unit.spec.set) == (
            prev.spec.epochs,
            prev.spec.steps,
            prev.spec.set,
        ):
            return
        s = self.optuna_study(unit)
        if s.user_attrs.get(SEEDED_ATTR) or s.get_trials(deepcopy=False):
            return
        s.set_user_attr(SEEDED_ATTR, True)
        best = ranked(self.trials(prev), self.study.direction)
        if not best:
            return
        space = space if space is not None else self.space(unit)
        params = {k: v for k, v in best[0].params.items() if k in space and space[k].contains(v)}
        if params:
            s.enqueue_trial(params, user_attrs={"seeded_from": best[0].number})

    # -- repeat stages --------------------------------------------------------

    def repeat_source(self, unit: Stage) -> tuple[Stage, FrozenTrial] | None:
        """What a repeat cell trains again: the best complete trial of the latest searching
        stage that has one for this cell (the last one to train the full length, usually)."""
        for prev in self._earlier(unit):
            top = ranked(self.trials(prev), self.study.direction)
            if top:
                return prev, top[0]
        return None

    def _repeat_space(self, unit: Stage) -> Space:
        source = self.repeat_source(unit)
        assert unit.spec.repeat is not None
        seeds = tuple(unit.spec.repeat.seed_values())
        base = self.space(source[0]) if source else self.cell_space(unit.cell)
        seed = Range(SEED_PARAM, CategoricalDistribution(seeds), role="repeat")
        return {**base, SEED_PARAM: seed}

    def _enqueue_repeats(self, unit: Stage, space: Space) -> None:
        """Enqueues the source trial's parameters once per seed not already among the trials."""
        s = self.optuna_study(unit)
        source = self.repeat_source(unit)
        if source is None:
            s.set_user_attr(REPEAT_ATTR, None)
            return
        st, best = source
        s.set_user_attr(REPEAT_ATTR, {"stage": st.name, "trial": best.number, "value": best.value})
        assert unit.spec.repeat is not None
        have = {
            t.params.get(SEED_PARAM, t.system_attrs.get("fixed_params", {}).get(SEED_PARAM))
            for t in s.get_trials(deepcopy=False)
        }
        for seed in unit.spec.repeat.seed_values():
            if seed not in have:
                s.enqueue_trial(
                    {**best.params, SEED_PARAM: seed},
                    user_attrs={"repeat_of": f"{st.name}#{best.number}"},
                )

    def training_unit(self, unit: Stage) -> Stage:
        """The cell as its trials train it: a repeat cell takes its source stage's epochs and
        overrides, and no pruner (every seed runs to the end)."""
        if not unit.spec.is_repeat:
            return unit
        s = self.existing(unit)
        source = s.user_attrs.get(REPEAT_ATTR) if s is not None else None
        names = {st.name: st for st in self.stages}
        if not source or source["stage"] not in names:
            return unit
        spec = names[source["stage"]].spec.model_copy(
            update={
                "name": unit.spec.name,
                "pruner": PrunerSpec(name="none"),
                "refine": None,
                "seed_best": False,
                "repeat": unit.spec.repeat,
            }
        )
        return replace(unit, spec=spec)

    # -- budget -------------------------------------------------------------

    def started_at(self) -> float | None:
        if self._started_at is None:
            s = self.existing(self.units(self.stages[0])[0])
            self._started_at = s.user_attrs.get(STARTED_ATTR) if s is not None else None
        return self._started_at

    def total_trials(self) -> int:
        """The trials accounted in every cell of every stage (what ``rounds.max_trials`` caps)."""
        total = 0
        for st in self.stages:
            units = [u for u in self.units(st) if self.existing(u) is not None]
            if not units:
                # A worker creates a stage's studies only after it created every study of the
                # stage before: no later stage has any, and asking would cost a read each.
                break
            total += sum(self.counts(u).accounted for u in units)
        return total

    def budget_left(self) -> bool:
        r = self.study.rounds
        if r.max_trials is not None and self.total_trials() >= r.max_trials:
            return False
        started = self.started_at()
        return not (
            r.time_budget_s is not None
            and started is not None
            and time.time() - started > r.time_budget_s
        )

    # -- results ------------------------------------------------------------

    def all_trials(self) -> list[tuple[Stage, FrozenTrial]]:
        """Every trial with the cell of the stage it belongs to."""
        return [(u, t) for u in self.all_units() for t in self.trials(u)]

    def best(self, cell: Cell | None = None) -> tuple[Stage, FrozenTrial] | None:
        """The best complete trial of the searching stages (of one cell, or of all).

        Repeat stages are left out: their trials re-measure a best setting, and one
        lucky seed of them is not a better setting.
        """
        pairs = [
            (u, t)
            for u in self.all_units()
            if not u.spec.is_repeat and (cell is None or u.cell.index == cell.index)
            for t in ranked(self.trials(u), self.study.direction)
        ]
        if not pairs:
            return None
        sign = 1.0 if self.study.direction == "maximize" else -1.0
        return max(pairs, key=lambda p: (sign * float(p[1].value or 0.0), p[0].index))


def cell_data(search: StagedSearch, unit: Stage) -> dict[str, Any]:
    """One cell of one stage as plain values: stored ranges, edge flags, counts, best trial."""
    trials = search.trials(unit)
    s = search.existing(unit)
    stored = s.user_attrs.get(SPACE_ATTR) if s is not None else None
    top = ranked(trials, search.study.direction)
    row = {
        "cell": unit.cell.key,
        "values": unit.cell.params,
        "study_name": unit.study_name,
        "trials_planned": search.planned(unit),
        "ranges": dict(stored or {}),
        "edge_flags": [f.message() for f in search.flags(unit)],
        "counts": asdict(count_trials(trials)),
        "noise": within_noise(trials, search.study.metric, search.study.direction),
        "best": _trial_dict(top[0]) if top else None,
    }
    if unit.spec.is_repeat:
        row["repeat_of"] = s.user_attrs.get(REPEAT_ATTR) if s is not None else None
        row["epochs"] = search.training_unit(unit).spec.epochs
        row["steps"] = search.training_unit(unit).spec.steps
    return row


def stage_data(search: StagedSearch, st: Stage) -> dict[str, Any]:
    """One stage as plain values: its settings, and per cell (``cells``) its ranges, edge
    flags, counts and best; without scientific parameters the stage's own fields are its one
    cell's, with them counts are summed and the best is the best cell's."""
    cells = [cell_data(search, u) for u in search.units(st)]
    one = cells[0] if len(cells) == 1 else None
    counts: dict[str, int] = {}
    for c in cells:
        for k, v in c["counts"].items():
            counts[k] = counts.get(k, 0) + v
    sign = 1.0 if search.study.direction == "maximize" else -1.0
    bests = [dict(c["best"], cell=c["cell"]) for c in cells if c["best"] is not None]
    best = max(bests, key=lambda b: sign * float(b["value"]), default=None)
    spec = st.spec
    return {
        "name": st.name,
        "study_name": one["study_name"] if one else f"{st.study_name}.<cell>",
        "sampler": "repeat" if spec.is_repeat else spec.sampler,
        "pruner": spec.pruner.name,
        "epochs": (one or {}).get("epochs", spec.epochs) if spec.is_repeat else spec.epochs,
        "steps": (one or {}).get("steps", spec.steps) if spec.is_repeat else spec.steps,
        "trials_planned": sum(c["trials_planned"] for c in cells),
        "repeat": spec.repeat.model_dump() if spec.repeat else None,
        "ranges": one["ranges"] if one else {},
        "edge_flags": one["edge_flags"]
        if one
        else [f"{c['cell']}: {f}" for c in cells for f in c["edge_flags"]],
        "counts": counts,
        "noise": one["noise"] if one else None,
        "best": best,
        "cells": cells,
    }


def repeat_stats(search: StagedSearch, st: Stage) -> dict[str, Any]:
    """A repeat stage's values per cell: mean, standard deviation and a 95% Student-t
    interval, and which cells Welch's t-test cannot tell from the best cell (p >= 0.05).

    The best cell is the one with the best mean. Two cells whose values are all equal
    within each cell (zero spread) are indistinguishable when their means are equal.
    """
    import numpy as np
    from scipy import stats

    direction = search.study.direction
    sign = 1.0 if direction == "maximize" else -1.0
    rows: dict[str, dict[str, Any]] = {}
    for u in search.units(st):
        done = sorted(
            ranked(search.trials(u), direction), key=lambda t: t.params.get(SEED_PARAM, 0)
        )
        values = [float(t.value or 0.0) for t in done]
        n = len(values)
        row: dict[str, Any] = {
            "values": values,
            "seeds": [t.params.get(SEED_PARAM) for t in done],
            "trials": [t.number for t in done],
            "n": n,
            "mean": float(np.mean(values)) if n else None,
            "std": float(np.std(values, ddof=1)) if n >= 2 else None,
            "ci95": None,
        }
        if n >= 2:
            mean, std = row["mean"], row["std"]
            if std == 0.0:
                row["ci95"] = [mean, mean]
            else:
                lo, hi = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=std / math.sqrt(n))
                row["ci95"] = [float(lo), float(hi)]
        rows[u.cell.key] = row
    measured = [k for k, r in rows.items() if r["n"]]
    best = max(measured, key=lambda k: sign * rows[k]["mean"], default=None)
    for key, row in rows.items():
        row["p_vs_best"], row["indistinguishable_from_best"] = None, None
        if best is None or not row["n"]:
            continue
        if key == best:
            row["indistinguishable_from_best"] = True
            continue
        a, b = row["values"], rows[best]["values"]
        if len(a) < 2 or len(b) < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # zero spread: handled below
            p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        if not math.isfinite(p):
            p = 1.0 if np.mean(a) == np.mean(b) else 0.0
        row["p_vs_best"] = p
        row["indistinguishable_from_best"] = p >= ALPHA
    return {
        "stage": st.name,
        "test": "welch_t",
        "rule": f"Welch's t-test of each cell's values against the best cell's; "
        f"p >= {ALPHA} is indistinguishable from the best",
        "confidence": CONFIDENCE,
        "alpha": ALPHA,
        "best_cell": best,
        "cells": rows,
    }


def summary_data(search: StagedSearch, study_dir: Path, storage_desc: str) -> dict[str, Any]:
    """The study's summary as plain values (written as summary.json, rendered by the CLI).

    ``cells`` gives each cell's best trial over the searching stages; ``repeats``
    each repeat stage's statistics (:func:`repeat_stats`).
    """
    study = search.study
    stages = [stage_data(search, st) for st in search.stages]
    totals: dict[str, int] = {}
    for row in stages:
        for k, v in row["counts"].items():
            totals[k] = totals.get(k, 0) + v
    best = search.best()
    cells = []
    for cell in search.cells:
        b = search.best(cell)
        cells.append(
            {
                "cell": cell.key,
                "values": cell.params,
                "best": {"stage": b[0].name, **_trial_dict(b[1])} if b else None,
            }
        )
    scientific = {}
    for name, spec in study.space.items():
        if spec.role != "scientific":
            continue
        per: dict[str, Any] = {}
        for u, t in search.all_trials():
            if u.spec.is_repeat or t.state != TrialState.COMPLETE or t.value is None:
                continue
            if name not in recipe_values(t.params):
                continue
            key = json.dumps(recipe_values(t.params)[name])
            cur = per.get(key)
            better = cur is None or (
                t.value > cur["value"] if study.direction == "maximize" else t.value < cur["value"]
            )
            if better:
                per[key] = _trial_dict(t)
        scientific[name] = per
    return {
        "study": study.name,
        "metric": study.metric,
        "direction": study.direction,
        "study_dir": str(study_dir),
        "storage": storage_desc,
        "best": (
            {"stage": best[0].name, "cell": best[0].cell.key, **_trial_dict(best[1])}
            if best
            else None
        ),
        "stages": stages,
        "counts": totals,
        "cells": cells,
        "repeats": [repeat_stats(search, st) for st in search.stages if st.spec.is_repeat],
        "best_by_scientific": scientific,
    }


def _trial_dict(t: FrozenTrial) -> dict[str, Any]:
    return {
        "trial": t.number,
        "value": t.value,
        "params": recipe_values(t.params),
        "run_dir": t.user_attrs.get("run_dir"),
        "epochs_run": t.user_attrs.get("epochs_run"),
    }
