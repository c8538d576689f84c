"""Writing an ensemble as one deployable file: TorchScript, torch.export or ONNX.

The file carries everything a user needs to run it, with nothing of tunekit
imported: the members' weights and code, and a metadata record (members and
their metrics, the preprocessing, the classes) stored inside the file itself
(TorchScript and ``torch.export`` extra files ``tunekit.json``; ONNX
``metadata_props`` key ``tunekit``).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunekit.errors import TunekitError, first_line

FORMATS: tuple[str, ...] = ("torchscript", "export", "onnx")
METADATA_KEY = "tunekit.json"
ENSEMBLE_FORMAT = "tunekit-ensemble-v1"


@dataclass
class ExportResult:
    """What was written, and how closely the file reproduces the eager ensemble on the example."""

    path: Path
    format: str
    max_abs_diff: float
    metadata: dict[str, Any]


def format_for(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The format named by ``fmt``, else by the suffix: ``.onnx``, ``.pt2`` (torch.export), else TorchScript."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise TunekitError(
                f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}", field="--format"
            )
        return fmt
    suffix = Path(path).suffix.lower()
    return {".onnx": "onnx", ".pt2": "export"}.get(suffix, "torchscript")


def describe_preprocessing(dataset: Any) -> list[dict[str, Any]]:
    """The evaluation transform of ``dataset`` as plain records (resize, normalise, ...)."""
    while hasattr(dataset, "dataset") and not hasattr(dataset, "transform"):
        dataset = dataset.dataset  # Subset and friends
    transform = getattr(dataset, "transform", None) or getattr(dataset, "transforms", None)
    steps = getattr(transform, "transforms", [transform] if transform is not None else [])
    out: list[dict[str, Any]] = []
    for t in steps:
        record: dict[str, Any] = {"op": type(t).__name__}
        for attr in ("size", "mean", "std", "dtype", "scale"):
            value = getattr(t, attr, None)
            if value is None:
                continue
            if isinstance(value, dict):  # v2.ToDtype keeps {type: dtype}
                value = {getattr(k, "__name__", str(k)): str(v) for k, v in value.items()}
            elif isinstance(value, torch.dtype):
                value = str(value)
            elif isinstance(value, (tuple, list)):
                value = list(value)
            record[attr] = value
        out.append(record)
    return out


def _write_atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The real suffix stays last: torch.export checks it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _quiet_torchscript() -> Iterator[None]:
    # TorchScript is deprecated upstream but still the one format that a C++
    # or Python-only deployment loads with nothing but libtorch.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _torchscript(module: nn.Module) -> torch.jit.ScriptModule:
    with _quiet_torchscript():
        try:
            return torch.jit.script(module)
        except Exception as exc:  # the scripting compiler raises many kinds
            raise TunekitError(
                f"the ensemble cannot be compiled to TorchScript ({first_line(exc, 160)}); export to .pt2 or .onnx instead",
                field="--out",
            ) from None


#: The batch dimension of the classifier ensemble's input ``x`` stays free in the file.
_BATCH_DIM = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}


def export_ensemble(
    module: nn.Module,
    example: Any,
    path: str | os.PathLike[str],
    metadata: dict[str, Any],
    *,
    fmt: str | None = None,
) -> ExportResult:
    """Writes ``module`` (in eval mode, on the CPU) to ``path`` with ``metadata`` inside.

    ``example`` is one input batch (a tensor for classifiers, a list of images
    for detectors); the written file is loaded back and run on it, and the
    largest difference from the eager module is returned.
    """
    path = Path(path)
    kind = format_for(path, fmt)
    module = module.eval().cpu()
    meta = {"format": ENSEMBLE_FORMAT, "file_format": kind, **metadata}
    text = json.dumps(meta, indent=2, allow_nan=True)
    with torch.no_grad():
        expected = module(example)
    if kind == "torchscript":
        scripted = _torchscript(module)
        with _quiet_torchscript():
            _write_atomic(
                path, lambda f: torch.jit.save(scripted, f, _extra_files={METADATA_KEY: text})
            )
    elif kind == "export":
        if not isinstance(example, torch.Tensor):
            raise TunekitError(
                "torch.export of a detector ensemble is not supported; use TorchScript (.pt)",
                field="--out",
            )
        program = _torch_export(module, example)
        _write_atomic(
            path, lambda f: torch.export.save(program, f, extra_files={METADATA_KEY: text})
        )
    else:
        if not isinstance(example, torch.Tensor):
            raise TunekitError(
                "ONNX export of a detector ensemble is not supported; use TorchScript (.pt)",
                field="--out",
            )
        _write_atomic(path, lambda f: _onnx(module, example, f, text))
    got = run_exported(path, kind, example)
    return ExportResult(path, kind, _max_diff(expected, got), meta)


def _torch_export(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    try:
        return torch.export.export(module, (example,), dynamic_shapes=_BATCH_DIM)
    except Exception as exc:  # export reports unsupported code with many exception types
        raise TunekitError(
            f"torch.export cannot capture the ensemble ({first_line(exc, 160)}); try .pt (TorchScript)",
            field="--out",
        ) from None


def _onnx(module: nn.Module, example: torch.Tensor, f: str, text: str) -> None:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress notes are not the user's problem
        try:
            torch.onnx.export(
                module,
                (example,),
                f,
                input_names=["images"],
                output_names=["probs"],
                dynamic_shapes=_BATCH_DIM,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:
            raise TunekitError(
                f"ONNX export failed ({first_line(exc, 160)}); try .pt (TorchScript)", field="--out"
            ) from None
    model = onnx.load(f)
    entry = model.metadata_props.add()
    entry.key, entry.value = "tunekit", text
    onnx.save(model, f)


def run_exported(path: str | os.PathLike[str], kind: str, example: Any) -> Any:
    """Loads an exported file and runs it on ``example`` (the way a deployment would)."""
    if kind == "torchscript":
        with torch.no_grad(), _quiet_torchscript():
            return torch.jit.load(str(path))(example)
    if kind == "export":
        with torch.no_grad():
            return torch.export.load(str(path)).module()(example)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": example.numpy()})[0])


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata record inside an exported ensemble file."""
    kind = format_for(path)
    if kind == "onnx":
        import onnx

        props = {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
        return dict(json.loads(props["tunekit"]))
    files = {METADATA_KEY: ""}
    if kind == "export":
        torch.export.load(str(path), extra_files=files)
    else:
        with _quiet_torchscript():
            torch.jit.load(str(path), _extra_files=files)
    raw = files[METADATA_KEY]
    return dict(json.loads(raw.decode() if isinstance(raw, bytes) else raw))


def _max_diff(a: Any, b: Any) -> float:
    if isinstance(a, torch.Tensor):
        return float((a.float() - torch.as_tensor(b).float()).abs().max()) if a.numel() else 0.0
    if isinstance(a, dict):
        return max((_max_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return float("inf")
        return max((_max_diff(x, y) for x, y in zip(a, b)), default=0.0)
    return 0.0
