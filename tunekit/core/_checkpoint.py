"""Atomic checkpoint files and the RNG state they carry.

Writes go to a temporary file in the same folder, are flushed to disk, then
renamed over the target, so a kill at any moment leaves either the old file or
the new one, never half of one. Reads use ``torch.load(weights_only=True)``
only; everything stored is tensors and plain Python values for that reason.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunekit.errors import CheckpointError, first_line

FORMAT = "tunekit-checkpoint-v1"


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` that never leaves a partial file at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], *, require_format: bool = True) -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True``; a bad file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such checkpoint file", file=str(path))
    try:
        # torch warns about some legacy formats on its way to the error below; the one line
        # that follows says what matters.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(_unreadable_reason(exc), file=str(path)) from None
    if require_format and not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        raise CheckpointError(
            f"not a tunekit checkpoint (expected a mapping with format={FORMAT!r})", file=str(path)
        )
    return obj


def _unreadable_reason(exc: Exception) -> str:
    """One line for a file ``torch.load(weights_only=True)`` refuses, whole words only."""
    text = str(exc)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return (
            f"holds a Python object ({refused.group(1)}) that tunekit does not load: checkpoints "
            "are read with torch.load(weights_only=True), which runs no code from the file; "
            "save tensors and plain values only, e.g. torch.save(model.state_dict(), path)"
        )
    if "Weights only load failed" in text:
        detail = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
        why = detail.group(1).strip() if detail else "it holds more than tensors and plain values"
        return (
            f"refused by torch.load(weights_only=True): {_clip(why)}; save tensors and plain "
            "values only, e.g. torch.save(model.state_dict(), path)"
        )
    first = first_line(exc)
    return f"not a readable checkpoint (truncated or not made by torch.save: {_clip(first)})"


def _clip(text: str, limit: int = 200) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


def rng_state() -> dict[str, Any]:
    """Every RNG a training step can touch, as weights_only-loadable values."""
    np_state: tuple[Any, ...] = np.random.get_state()  # type: ignore[assignment]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def preserved_rng(loader: Any) -> Iterator[None]:
    """Restores the global RNGs and the loader's generator afterwards.

    A pass over training batches (with random augmentation) inside a run must
    not change the batches and draws of the steps that follow it.
    """
    state = rng_state()
    generator = getattr(loader, "generator", None)
    gen_state = generator.get_state() if isinstance(generator, torch.Generator) else None
    try:
        yield
    finally:
        set_rng_state(state)
        if gen_state is not None:
            generator.set_state(gen_state)  # type: ignore[union-attr]
