"""A trial's bookkeeping: journal writes held into one, counts kept between calls, heartbeats."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tunekit.search import Heartbeat, LivenessSpec, open_storage
from tunekit.search._liveness import HEARTBEAT_ATTR
from tunekit.search._stages import SURPLUS_ATTR, _KeptTally, count_trials
from tunekit.search._storage import one_write


def _appends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of entries of each append to any journal file, from now on."""
    sizes: list[int] = []
    original = JournalFileBackend.append_logs

    def counted(self: JournalFileBackend, logs: list[dict[str, object]]) -> None:
        sizes.append(len(logs))
        original(self, logs)

    monkeypatch.setattr(JournalFileBackend, "append_logs", counted)
    return sizes


def _study(tmp_path: Path) -> optuna.Study:
    storage = open_storage(None, tmp_path)
    return optuna.create_study(storage=storage, study_name="s")


def test_one_write_appends_once_and_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    sizes = _appends(monkeypatch)
    with one_write(trial.storage, trial._trial_id):
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("a", 1)
        with one_write(trial.storage, trial._trial_id):  # nested: the outer one writes
            trial.set_user_attr("b", "two")
        study.tell(trial, 0.5)
    assert sizes == [4]
    # Another process reading the file sees every entry, in order.
    frozen = optuna.load_study(study_name="s", storage=open_storage(None, tmp_path)).trials[0]
    assert frozen.state == TrialState.COMPLETE and frozen.value == 0.5
    assert frozen.user_attrs == {"a": 1, "b": "two"} and "x" in frozen.params


def test_one_write_raises_when_another_worker_finished_the_trial(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    other = open_storage(None, tmp_path)  # another worker, failing the trial meanwhile
    with pytest.raises(UpdateFinishedTrialError), one_write(trial.storage, trial._trial_id):
        trial.set_user_attr("a", 1)
        other.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        trial.set_user_attr("b", 2)
    # Every refused entry was read: the storage's next calls do not raise them again.
    assert study.trials[0].state == TrialState.FAIL
    study.ask()
    reread = optuna.load_study(study_name="s", storage=open_storage(None, tmp_path)).trials[0]
    assert reread.state == TrialState.FAIL and reread.user_attrs == {}


def test_tally_counts_as_count_trials_does() -> None:
    states: list[tuple[TrialState, dict[str, Any]]] = [
        (TrialState.COMPLETE, {}),
        (TrialState.FAIL, {}),
        (TrialState.PRUNED, {}),
        (TrialState.FAIL, {SURPLUS_ATTR: True}),
        (TrialState.RUNNING, {}),
        (TrialState.FAIL, {}),
        (TrialState.COMPLETE, {"retry_history": [1]}),
        (TrialState.WAITING, {"retry_history": [5]}),
        (TrialState.RUNNING, {}),
    ]
    study = optuna.create_study()
    for state, attrs in states:
        frozen = optuna.trial.create_trial(
            state=state,
            value=1.0 if state == TrialState.COMPLETE else None,
            system_attrs=attrs,
        )
        study.add_trial(frozen)
    trials = study.get_trials(deepcopy=False)
    tally = _KeptTally()
    for _ in range(2):  # the second call counts from what the first kept
        assert tally.count(trials) == count_trials(trials)
        for upto in range(len(trials)):
            expected = count_trials([t for t in trials if t.number <= upto])
            assert tally.count(trials, upto) == expected, upto
    assert tally.done == 4  # trials 0-3 are finished; 4 runs


def test_a_short_trial_writes_no_heartbeat_and_a_long_one_beats(tmp_path: Path) -> None:
    study = _study(tmp_path)
    spec = LivenessSpec(heartbeat_s=0.2, grace_s=5)
    short, long = study.ask(), study.ask()
    with Heartbeat(study, study._storage, short._trial_id, spec):
        pass
    with Heartbeat(study, study._storage, long._trial_id, spec):
        time.sleep(0.7)
    beaten = study._storage.get_trial(long._trial_id).system_attrs.get(HEARTBEAT_ATTR)
    assert HEARTBEAT_ATTR not in study._storage.get_trial(short._trial_id).system_attrs
    assert beaten is not None
    time.sleep(0.4)  # none after the block
    assert study._storage.get_trial(long._trial_id).system_attrs[HEARTBEAT_ATTR] == beaten
