"""Throughput: optimizer steps and samples per second, into the metrics store."""

from __future__ import annotations

import time

from tunekit.core import batch_size

from ._base import DiagnosticHook, never_fails


class ThroughputMonitor(DiagnosticHook):
    """Puts ``throughput/steps_per_s`` and ``throughput/samples_per_s`` every ``interval`` steps.

    Samples count every rank's batches, and all of a step's batches when it accumulates.
    """

    priority = 70  # after the other producers, before the store closes the step (75)

    def __init__(self, interval: int = 20) -> None:
        self.interval = interval
        self._mark_time = 0.0
        self._mark_step = 0
        self._samples = 0

    @never_fails
    def before_train(self) -> None:
        self._mark_time, self._mark_step, self._samples = time.perf_counter(), self.trainer.step, 0

    @never_fails
    def after_step(self) -> None:
        t = self.trainer
        # t.batch is the step's last batch; with accumulation a step took accumulate_steps.
        self._samples += batch_size(t.batch) * t.dist.world_size * t.accumulate_steps
        if t.step - self._mark_step < self.interval:
            return
        now = time.perf_counter()
        elapsed = max(now - self._mark_time, 1e-9)
        self.metrics.put("throughput/steps_per_s", (t.step - self._mark_step) / elapsed)
        if self._samples:
            self.metrics.put("throughput/samples_per_s", self._samples / elapsed)
        self._mark_time, self._mark_step, self._samples = now, t.step, 0
