"""A digits dataset that SIGKILLs its own process when a chosen item count is reached.

Used through a recipe's ``data.builder`` to kill a training run at an exact,
repeatable point in the middle of an epoch.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from torch.utils.data import Dataset

from tunekit.config import DataConfig
from tunekit.data import DataBundle
from tunekit.data._classification import digits


class _KillAfter(Dataset[Any]):
    def __init__(self, inner: Dataset[Any], kill_at: int) -> None:
        self.inner, self.kill_at, self.count = inner, kill_at, 0

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        self.count += 1
        if self.kill_at and self.count >= self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner[i]


def killing_digits(image_size: int = 16) -> DataBundle:
    bundle = digits(DataConfig(image_size=image_size))
    bundle.train = _KillAfter(bundle.train, int(os.environ.get("TUNEKIT_TEST_KILL_AT", "0")))
    return bundle
