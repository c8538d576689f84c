"""Starting weights: a local file or a torchvision weights name, matched to a model and reported.

``model.weights`` is either a local checkpoint (a tunekit checkpoint or a
plain state dict) or ``torchvision:<Enum>.<MEMBER>``, e.g.
``torchvision:ResNet50_Weights.IMAGENET1K_V2`` (``DEFAULT`` works too). A
name is resolved with torchvision's own weights API and read from the torch
hub cache (``$TORCH_HOME/hub/checkpoints``), where ``torchvision`` itself
would have put it; nothing is ever downloaded. The sha256 prefix in the file
name (``resnet50-11ad3fa6.pth``) is checked as torch hub checks it.

Loading says what happened: tensors loaded, missing from the checkpoint,
unexpected in it, with shapes that differ, and norm layers of another kind
(BatchNorm weights into GroupNorm layers, or the reverse), which is an error
unless ``model.weights_strict: false``.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models import WeightsEnum
from torchvision.ops import FrozenBatchNorm2d

from tunekit.core import NORMS, load_checkpoint
from tunekit.engine import HookBase
from tunekit.errors import CheckpointError, ConfigError

log = logging.getLogger("tunekit.models")

#: ``model.weights`` values that name torchvision weights start with this.
TORCHVISION_PREFIX = "torchvision:"

_FIELD = "model.weights"
_EXAMPLE = "torchvision:ResNet50_Weights.IMAGENET1K_V2"


# -- where the tensors come from ---------------------------------------------


def torchvision_weight_enums() -> dict[str, type[WeightsEnum]]:
    """Every weights enum torchvision has, by name (classification, detection, video, ...).

    The same modules that ``torchvision.models.get_weight`` searches.
    """
    modules = [tvm] + [
        m
        for _, m in inspect.getmembers(tvm, inspect.ismodule)
        if (getattr(m, "__file__", None) or "").endswith("__init__.py")
    ]
    enums: dict[str, type[WeightsEnum]] = {}
    for module in modules:
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, WeightsEnum)
                and value is not WeightsEnum
            ):
                enums.setdefault(name, value)
    return enums


def _close(word: str, choices: list[str], n: int = 3) -> str:
    """`` (did you mean 'a', 'b'?)`` for the closest choices, case-insensitively, or ``""``."""
    lower = {c.lower(): c for c in choices}
    found = difflib.get_close_matches(word.lower(), list(lower), n=n, cutoff=0.6)
    return f" (did you mean {', '.join(repr(lower[f]) for f in found)}?)" if found else ""


def torchvision_weights(name: str, *, file: str | None = None) -> WeightsEnum:
    """The torchvision weights ``"ResNet50_Weights.IMAGENET1K_V2"`` names (``.DEFAULT`` too).

    An unknown enum or member is a one-line ConfigError with the close matches.
    """
    enum_name, dot, member = name.partition(".")
    if not dot or not enum_name or not member or "." in member:
        raise ConfigError(
            f"value {TORCHVISION_PREFIX + name!r} is not allowed: write "
            f"torchvision:<WeightsEnum>.<MEMBER>, e.g. {_EXAMPLE!r} or "
            "'torchvision:ResNet50_Weights.DEFAULT'",
            file=file,
            field=_FIELD,
        )
    enums = torchvision_weight_enums()
    if enum_name not in enums:
        raise ConfigError(
            f"unknown torchvision weights {enum_name!r}{_close(enum_name, sorted(enums))}; "
            f"the names are torchvision's weights enums, e.g. {_EXAMPLE!r}",
            file=file,
            field=_FIELD,
        )
    members = list(enums[enum_name].__members__)
    if member not in members:
        raise ConfigError(
            f"{enum_name} has no weights {member!r}{_close(member, members)}; "
            f"choose one of: {', '.join(members)}",
            file=file,
            field=_FIELD,
        )
    # torchvision's own lookup, so that a name means what it means to torchvision.
    return tvm.get_weight(f"{enum_name}.{member}")


def hub_file(url: str) -> Path:
    """Where torch hub keeps the file of ``url``: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def check_hash(path: Path, *, file: str | None = None, source: str = "") -> None:
    """The file's sha256 must start with the hex digits in its name (``name-<hex>.ext``).

    The rule torch hub applies to what it downloads; a name without them is not checked.
    """
    match = torch.hub.HASH_REGEX.search(path.name)
    prefix = match.group(1) if match else ""
    if not prefix:
        return
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    got = digest.hexdigest()
    if not got.startswith(prefix):
        raise ConfigError(
            f"{path} does not match the hash in its name{source}: its sha256 starts with "
            f"{got[: len(prefix)]}, the name says {prefix}; the file is damaged or another "
            "one: fetch it again",
            file=file,
            field=_FIELD,
        )


@dataclass(frozen=True)
class WeightsSource:
    """A ``model.weights`` value resolved to a local file."""

    spec: str  # as the recipe writes it
    path: Path
    url: str | None = None  # where a named weight is published
    label: str = ""  # a named weight's full name (DEFAULT resolved), else the spec

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.spec)


def resolve_weights(spec: str, *, file: str | None = None) -> WeightsSource:
    """The local file ``spec`` stands for: itself, or a torchvision name's file in the hub cache.

    A named weight that is not cached is a one-line ConfigError saying which
    file to put where, and where to fetch it from; its hash is checked.
    """
    if not spec.startswith(TORCHVISION_PREFIX):
        return WeightsSource(spec, Path(spec))
    weights = torchvision_weights(spec.removeprefix(TORCHVISION_PREFIX), file=file)
    url = weights.url
    path = hub_file(url)
    label = f"torchvision:{type(weights).__name__}.{weights.name}"
    if not path.is_file():
        raise ConfigError(
            f"{label} is not in the torch hub cache and nothing is downloaded: put the file at "
            f"{path} (fetch {url} on a machine with network; TORCH_HOME moves the cache)",
            file=file,
            field=_FIELD,
        )
    check_hash(path, file=file, source=f" ({label} from {url})")
    return WeightsSource(spec, path, url, label)


def read_weights(path: str, *, file: str | None = None, hint: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a local weight file: a tunekit checkpoint's model, or a plain state dict.

    Every failure is a one-line ConfigError on ``model.weights``; ``hint`` is
    appended to an unreadable file's message (where such a file comes from).
    """
    try:
        obj = load_checkpoint(path, require_format=False)
    except CheckpointError as exc:
        raise ConfigError(
            f"{path!r}: {exc.message}{hint}", file=file, field="model.weights"
        ) from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"{path!r} holds no model weights (expected a tunekit checkpoint or a state dict)",
            file=file,
            field="model.weights",
        )
    return state


# -- what loaded --------------------------------------------------------------


@dataclass
class WeightsReport:
    """How a checkpoint's tensors met a model's.

    Counts are of state-dict tensors (buffers such as BN running statistics
    included); ``missing`` counts the model's tensors in ``scope`` the
    checkpoint has no value for, the head excepted when it is reset.
    """

    source: str
    file: str
    url: str | None = None
    scope: str = ""  # the part of the model loaded into ("" for all of it)
    loaded: int = 0
    missing: int = 0
    unexpected: int = 0
    shape_mismatched: int = 0
    head_reset: int = 0
    norm_mismatched: int = 0  # norm layers, not tensors
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few names per count

    @property
    def skipped(self) -> int:
        """Checkpoint tensors not loaded: unexpected, of another shape, or a reset head's."""
        return self.unexpected + self.shape_mismatched + self.head_reset

    @property
    def level(self) -> str:
        """``warning`` when part of the model was left at its initialisation unasked."""
        bad = self.missing or self.shape_mismatched or self.norm_mismatched
        return "warning" if bad else "info"

    def describe(self) -> str:
        """One line: ``weights X (file): 60 loaded, 2 head reset, 0 missing, ...``."""
        where = f" into {self.scope}" if self.scope else ""
        parts = [
            f"{self.loaded} loaded{where}",
            f"{self.missing} missing",
            f"{self.unexpected} unexpected",
            f"{self.shape_mismatched} shape-mismatched",
        ]
        if self.head_reset:
            parts.append(f"{self.head_reset} head reset")
        if self.norm_mismatched:
            parts.append(f"{self.norm_mismatched} norm layers of another kind")
        eg = [f"{k} e.g. {v[0]!r}" for k, v in self.examples.items() if v and k != "head_reset"]
        tail = f" ({'; '.join(eg)})" if eg else ""
        src = self.source if self.source == self.file else f"{self.source} ({self.file})"
        return f"weights {src}: {', '.join(parts)}{tail}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "skipped": self.skipped}


_NORMS = (*NORMS, FrozenBatchNorm2d)


def _has_statistics(module: nn.Module) -> bool:
    return isinstance(getattr(module, "running_mean", None), torch.Tensor)


def norm_mismatches(
    model: nn.Module, state: dict[str, torch.Tensor], scope: str = ""
) -> list[tuple[str, str, bool]]:
    """Norm layers whose checkpoint entry is of another kind: ``(name, model's layer, ckpt has stats)``.

    A checkpoint's norm layer has running statistics (BatchNorm, also frozen) or
    only an affine weight (GroupNorm, LayerNorm); so has the model's. Loading
    one kind into the other copies a weight and bias that were trained to go
    with a normalisation the model does not do. A model without a norm
    (``Identity``) where the checkpoint has one counts too.
    """
    found = []
    for name, module in model.named_modules():
        if not name or not name.startswith(scope):
            continue
        stats = f"{name}.running_mean" in state
        weight = state.get(f"{name}.weight")
        affine = weight is not None and weight.ndim == 1
        if not (stats or affine):
            continue
        if isinstance(module, _NORMS):
            if _has_statistics(module) != stats:
                found.append((name, type(module).__name__, stats))
        elif isinstance(module, nn.Identity):
            found.append((name, "no norm (Identity)", stats))
    return found


def _norm_error(found: list[tuple[str, str, bool]], source: str, file: str | None) -> ConfigError:
    name, model_kind, stats = found[0]
    if stats:
        theirs, fix = "BatchNorm layers (with running statistics)", "bn or frozen_bn"
    else:
        theirs, fix = "norm layers without running statistics (GroupNorm, LayerNorm)", "gn"
    return ConfigError(
        f"{source} has {theirs} where the model has {model_kind} ({len(found)} layers, e.g. "
        f"{name!r}): their weight and bias would be copied without the normalisation they were "
        f"trained with; set model.norm: {fix} to match the checkpoint, or "
        "model.weights_strict: false to load them anyway",
        file=file,
        field=_FIELD,
    )


def match_state(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: WeightsSource,
    scope: str = "",
    head: str | None = None,
    reset_head: bool = False,
) -> tuple[dict[str, torch.Tensor], WeightsReport]:
    """The checkpoint tensors ``model`` takes (keys already in the model's naming), and the report.

    ``scope`` limits what counts as missing to one part of the model (a
    detector's backbone body); ``head`` is the classifier head's module path,
    skipped when ``reset_head`` is set.
    """
    own = model.state_dict()
    report = WeightsReport(
        source=source.label, file=str(source.path), url=source.url, scope=scope.rstrip(".")
    )
    examples: dict[str, list[str]] = {}

    def count(kind: str, key: str) -> None:
        setattr(report, kind, getattr(report, kind) + 1)
        names = examples.setdefault(kind, [])
        if len(names) < 3:
            names.append(key)

    def in_head(key: str) -> bool:
        return head is not None and (key == head or key.startswith(head + "."))

    take: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k not in own:
            count("unexpected", k)
        elif reset_head and in_head(k):
            count("head_reset", k)
        elif own[k].shape != v.shape:
            count("shape_mismatched", k)
        else:
            take[k] = v
    for k in own:
        if k.startswith(scope) and k not in state and not (reset_head and in_head(k)):
            count("missing", k)
        elif reset_head and in_head(k) and k not in state:
            count("head_reset", k)
    report.loaded = len(take)
    report.examples = examples
    return take, report


def read_source(
    spec: str, *, file: str | None = None, hint: str = ""
) -> tuple[WeightsSource, dict[str, torch.Tensor]]:
    """The file ``spec`` stands for (:func:`resolve_weights`) and its tensors (:func:`read_weights`)."""
    source = resolve_weights(spec, file=file)
    return source, read_weights(str(source.path), file=file, hint=hint)


def load_state(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: WeightsSource,
    *,
    scope: str = "",
    head: str | None = None,
    reset_head: bool = False,
    strict: bool = True,
    file: str | None = None,
    nothing_matches: str = "the model (names or shapes differ)",
) -> WeightsReport:
    """Loads the tensors of ``state`` (keys in the model's naming) that fit ``model``.

    Loading nothing, and a norm mismatch when ``strict``, are one-line
    ConfigErrors on ``model.weights``. The report is kept with the model
    (:func:`weights_report`) for the run's log and summary.
    """
    path = str(source.path)
    take, report = match_state(
        model,
        state,
        source=source,
        scope=scope,
        head=head,
        reset_head=reset_head,
    )
    if not take:
        raise ConfigError(
            f"no tensor in {path!r} matches {nothing_matches}", file=file, field=_FIELD
        )
    found = norm_mismatches(model, state, scope)
    if found and strict:
        raise _norm_error(found, source.label, file)
    report.norm_mismatched = len(found)
    if found:
        report.examples["norm_mismatched"] = [n for n, _, _ in found[:3]]
    model.load_state_dict(take, strict=False)
    # Kept on the model as a plain attribute (outside its state dict) for the run's log and
    # summary: the builders return the model alone.
    model.__dict__["_tunekit_weights_report"] = report
    return report


def apply_weights(
    model: nn.Module,
    spec: str,
    *,
    head: str | None = None,
    reset_head: bool = False,
    strict: bool = True,
    file: str | None = None,
) -> WeightsReport:
    """Loads ``spec`` (a local file or a torchvision name) into ``model``, by state-dict key."""
    source, state = read_source(spec, file=file)
    return load_state(
        model, state, source, head=head, reset_head=reset_head, strict=strict, file=file
    )


def weights_report(model: nn.Module) -> WeightsReport | None:
    """How ``model``'s starting weights loaded, or None when it started from its initialisation."""
    inner = getattr(model, "module", model)  # DDP
    report = inner.__dict__.get("_tunekit_weights_report")
    return report if isinstance(report, WeightsReport) else None


class WeightsLog(HookBase):
    """Says how the starting weights loaded, once, as a run starts (not when it resumes).

    One line on the ``tunekit.models`` logger (a warning when part of the model
    was left at its initialisation unasked) and an event record (``"event":
    "weights"``, with the counts) in the run's ``metrics.jsonl``.
    """

    priority = 85  # after the MetricsWriter has trimmed a resumed stream

    def __init__(self, report: WeightsReport) -> None:
        self.report = report

    def before_train(self) -> None:
        t = self.trainer
        if t.step > 0 or not t.dist.is_main:
            return
        r = self.report
        message = r.describe()
        log.log(logging.WARNING if r.level == "warning" else logging.INFO, "%s", message)
        counts = {k: v for k, v in r.as_dict().items() if isinstance(v, int)}
        self.metrics.event("weights", message, level=r.level, step=0, echo=False, **counts)
