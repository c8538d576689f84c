"""Liveness: a worker killed mid-trial leaves its trial failed and its parameters retried.

Optuna's own heartbeat covers its RDB storages; for those we record Optuna's
heartbeat and let ``fail_stale_trials`` do the rest. For every other storage
(the default journal file) Optuna has none, so tunekit keeps its own: the
running worker writes the time into the trial's system attributes every
``heartbeat_s``, and any worker that sees a RUNNING trial silent for longer
than ``grace_s`` marks it FAIL and enqueues its parameters again (with
Optuna's retry callback, so the retry history is the same as on RDB).
"""

from __future__ import annotations

import copy
import os
import threading
import time
import warnings

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from ._study import LivenessSpec

HEARTBEAT_ATTR = "tunekit:heartbeat"


def retry_trial(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> None:
    """Enqueues ``trial``'s parameters again unless it was retried ``max_retry`` times."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # A copy: Optuna's callback appends to the trial's own ``retry_history`` list, and
        # storages hand out their cached trial, so this process's view of it would change.
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        retry(study, copy.deepcopy(trial))


def has_optuna_heartbeat(storage: BaseStorage) -> bool:
    """True for RDB storages opened with a heartbeat interval (see :func:`open_storage`)."""
    return isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None


def beat(storage: BaseStorage, trial_id: int) -> None:
    """Records that ``trial_id``'s worker is alive."""
    if isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None:
        storage.record_heartbeat(trial_id)
    else:
        storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())


def reap_stale(
    study: optuna.Study, storage: BaseStorage, spec: LivenessSpec, now: float | None = None
) -> list[int]:
    """Fails the trials whose workers went silent and enqueues retries; returns their numbers.

    ``storage`` is the one ``study`` was created on.
    """
    if has_optuna_heartbeat(storage):
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        return sorted(after - before)
    now = time.time() if now is None else now
    reaped = []
    study_id: int | None = None
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        start = t.datetime_start.timestamp() if t.datetime_start else now
        # Its start is a sign of life too: the first beat comes heartbeat_s later, and a
        # retry starts with the beats of the trial it retries.
        last = max(float(t.system_attrs.get(HEARTBEAT_ATTR, 0.0)), start)
        if now - last <= spec.grace_s:
            continue
        if study_id is None:
            study_id = storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(
                trial_id, "failure_reason", f"worker silent for {now - last:.1f}s (killed?)"
            )
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # it finished, or another worker failed it first
        frozen = storage.get_trial(trial_id)
        if frozen.state != TrialState.FAIL:
            continue
        retry_trial(study, frozen, spec.max_retry)
        reaped.append(t.number)
    return reaped


class Heartbeat:
    """Beats for one running trial and reaps other workers' dead trials, every ``heartbeat_s``.

    Use as a context manager around the trial. ``storage`` is the one ``study`` was
    created on, and ``trial_id`` the trial's id in it (see ``StagedSearch.trial_id``).
    The first beat is due ``heartbeat_s`` after the trial starts (its start is a sign of
    life), so a trial that ends sooner writes none. When the block exits no beat of the
    trial is under way, and none comes after.
    """

    def __init__(
        self, study: optuna.Study, storage: BaseStorage, trial_id: int, spec: LivenessSpec
    ) -> None:
        self.study, self.storage, self.trial_id, self.spec = study, storage, trial_id, spec
        self.due = 0.0  # time.monotonic() of the next beat

    def __enter__(self) -> Heartbeat:
        if has_optuna_heartbeat(self.storage):
            # Optuna finds a silent trial by its last beat; tunekit's own also by its start.
            beat(self.storage, self.trial_id)
        _BEATS.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _BEATS.remove(self)

    def beat_once(self) -> bool:
        """Beats and reaps once; False when the trial needs no more beats (it is finished)."""
        try:
            beat(self.storage, self.trial_id)
            reap_stale(self.study, self.storage, self.spec)
        except UpdateFinishedTrialError:
            return False  # our trial was finished (or failed by another worker)
        except Exception:  # a storage hiccup must not kill the trial; the next beat retries
            pass
        return True


class _Beats:
    """The process's one heartbeat thread, beating for every :class:`Heartbeat` entered.

    One thread for the process, started once: a thread started and joined for each
    trial costs two hand-overs between threads per trial, milliseconds on a busy machine.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._beats: list[Heartbeat] = []
        self._busy: Heartbeat | None = None  # the one beating now, outside the lock
        self._pid: int | None = None  # the process whose thread runs (a forked child has none)

    def add(self, hb: Heartbeat) -> None:
        with self._cond:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="tunekit-heartbeat", daemon=True).start()
            hb.due = time.monotonic() + hb.spec.heartbeat_s
            self._beats.append(hb)
            self._cond.notify_all()

    def remove(self, hb: Heartbeat) -> None:
        with self._cond:
            if hb in self._beats:
                self._beats.remove(hb)
            while self._busy is hb:
                self._cond.wait()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                hb = min(self._beats, key=lambda b: b.due, default=None)
                if hb is None or hb.due > now:
                    self._cond.wait(None if hb is None else hb.due - now)
                    continue
                hb.due = now + hb.spec.heartbeat_s
                self._busy = hb
                self._cond.release()
                try:
                    alive = hb.beat_once()
                finally:
                    self._cond.acquire()
                    self._busy = None
                    self._cond.notify_all()
                if not alive and hb in self._beats:
                    self._beats.remove(hb)


_BEATS = _Beats()
