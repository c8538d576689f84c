"""Step 1 of the recipe: is the loss at initialisation what the initialisation implies?

A freshly initialised classifier should be unsure of every class, so its
softmax cross-entropy over C classes is about log C (label smoothing leaves
this unchanged: against a uniform prediction every target distribution costs
log C). A detector is checked head by head, against what its task says each
head should start at (``tunekit.detection``: log(C+1) for a softmax box
classifier, log 2 for objectness, the focal prior for RetinaNet and FCOS).

A multi-label model is checked against its loss: binary cross-entropy per
class (``nn.BCEWithLogitsLoss``) against what the final layer's bias implies
for the batches' tag frequencies (log 2 with a zero bias; the entropy of the
tag prior with the bias set to it), and a softmax over targets normalised to
sum to 1 against log C, as a classifier.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tunekit.tasks import HeadPrior, get_task

from ._base import (
    LossFn,
    Objective,
    ProbeResult,
    SanityError,
    Status,
    Verdict,
    model_device,
    take_batches,
    worst,
)
from ._state import dropout_off, preserved

CHECK = "initial loss"

#: Relative distance from the expected loss that still passes / only warns.
PASS_TOL = 0.15
WARN_TOL = 0.5
#: A focal head's mean foreground probability may be this many times off its prior and pass / warn.
PRIOR_PASS = 2.0
PRIOR_WARN = 5.0
_NOT_FINITE: tuple[Status, str, str] = (
    "FAIL",
    "the loss is not finite at initialisation",
    "look for a log of 0 or a division by 0 in the loss, or inputs with NaN/Inf",
)


@dataclass
class HeadCheck:
    """One loss term (or a focal head's prior) against its expected value."""

    name: str
    kind: str  # "softmax", "sigmoid", "focal_prior" or "unchecked"
    measured: float
    expected: float | None
    status: Status | None
    note: str = ""


@dataclass
class InitialLossResult(ProbeResult):
    """What :func:`check_initial_loss` measured.

    Attributes:
        measured: mean total loss over the batches.
        expected: what the initialisation implies (classifier: log C), None if unknown.
        per_batch: the total loss of each batch.
        heads: each loss term (one for a classifier) with its own expectation.
        logit_std: std of the final layer's weight part W·h of the logits (classifier).
        class_bias: std over classes of the final layer's bias (classifier).
        final_layer: the Linear layer that produces the logits, when found.
        verdict: PASS / WARN / FAIL with the reason and the fix.
    """

    measured: float
    expected: float | None
    per_batch: list[float]
    heads: list[HeadCheck]
    verdict: Verdict
    logit_std: float | None = None
    class_bias: float | None = None
    num_classes: int | None = None
    final_layer: str | None = None

    def plot_data(self) -> dict[str, list[Any]]:
        """The bars of :meth:`plot`: one per checked head, measured beside expected."""
        checked = [h for h in self.heads if h.expected is not None]
        return {
            "names": [h.name for h in checked],
            "measured": [h.measured for h in checked],
            "expected": [h.expected for h in checked],
            "status": [h.status for h in checked],
        }

    def plot(self) -> Any:
        """A plotly bar chart of each head's measured value against its expected value."""
        from ._plots import initial_loss_figure

        return initial_loss_figure(self.plot_data(), f"Initial loss: {self.verdict.status}")


def check_initial_loss(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: LossFn | None = None,
    *,
    num_classes: int | None = None,
    num_batches: int = 4,
    focal_prior: float = 0.01,
    objective: Objective | None = None,
) -> InitialLossResult:
    """Measures the loss at initialisation and compares it with what the initialisation implies.

    The model runs in train mode (batch-norm uses batch statistics, as in the
    first step) with dropout off and no gradient; its state, the RNGs and the
    loader's generator are restored afterwards.

    Args:
        model: a classifier (``model(inputs) -> logits``) or, with ``loss_fn=None``,
            a torchvision-style detector (``model(images, targets) -> dict of losses``).
        loader: yields ``(inputs, targets)``.
        loss_fn: e.g. ``nn.CrossEntropyLoss()``; None for a detector.
        num_classes: C; read from the logits when not given. For a detector, the
            number of foreground classes (used when the box classifier is not found).
        num_batches: how many batches to average over.
        focal_prior: the foreground probability a focal-loss head should start
            at (0.01 in RetinaNet and FCOS, as in the focal-loss paper).

    Example:
        >>> result = tunekit.check_initial_loss(model, loader, nn.CrossEntropyLoss(), num_classes=10)  # doctest: +SKIP
        >>> result.verdict.status, result.measured, result.expected  # doctest: +SKIP
        ('PASS', 2.31, 2.302585092994046)
    """
    objective = objective or Objective(loss_fn, what=CHECK)
    device = model_device(model)
    # A model that returns its own loss terms is a detector: its task knows its heads.
    heads = get_task("detection").head_probe(model) if objective.is_detector else None
    final = None if objective.is_detector else _FinalLayerProbe(model)
    per_batch: list[float] = []
    term_sums: dict[str, float] = {}
    logits: list[torch.Tensor] = []
    multi_hot: list[torch.Tensor] = []  # a multi-label model's targets (their tag frequencies)
    with preserved(model, None, [loader]), torch.no_grad():
        model.train()
        dropout_off(model)
        try:
            for batch in take_batches(loader, num_batches, CHECK):
                out = objective(model, batch, device)
                per_batch.append(float(out.loss))
                for k, v in out.terms.items():
                    term_sums[k] = term_sums.get(k, 0.0) + float(v)
                y = out.targets
                if isinstance(y, torch.Tensor) and y.is_floating_point() and y.ndim == 2:
                    multi_hot.append(y.detach().float().cpu())
                if out.logits is not None:
                    logits.append(out.logits.detach().float().flatten(1).cpu())
                    if final is not None:
                        final.match(out.logits)
        finally:
            for probe in (heads, final):
                if probe is not None:
                    probe.remove()
    measured = sum(per_batch) / len(per_batch)
    terms = {k: v / len(per_batch) for k, v in term_sums.items()}
    if objective.is_detector:
        priors = heads.priors(terms, num_classes, focal_prior) if heads is not None else []
        return _detector_result(measured, per_batch, [_judge(p) for p in priors], num_classes)
    if isinstance(objective.loss_fn, nn.BCEWithLogitsLoss):
        return _sigmoid_result(measured, per_batch, logits, multi_hot, num_classes, final)
    return _classifier_result(measured, per_batch, logits, num_classes, final)


# -- classifier ----------------------------------------------------------


class _FinalLayerProbe:
    """Finds the Linear layer whose output is the logits, and splits them into W·h and b.

    Knowing the layer lets the verdict name the cause exactly: logits that are
    too large because of the weights (a scale problem) or because of the bias.
    """

    def __init__(self, model: nn.Module) -> None:
        self.outputs: list[tuple[str, nn.Linear, torch.Tensor]] = []
        self.name: str | None = None
        self.weight_part: list[torch.Tensor] = []
        self.bias: torch.Tensor | None = None
        self.handles = [
            m.register_forward_hook(self._hook(name))
            for name, m in model.named_modules()
            if isinstance(m, nn.Linear)
        ]

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and isinstance(module, nn.Linear):
                self.outputs.append((name, module, output))

        return hook

    def match(self, logits: torch.Tensor) -> None:
        for name, module, output in self.outputs:
            if output.data_ptr() == logits.data_ptr() and output.shape == logits.shape:
                b = (
                    module.bias.detach().float()
                    if module.bias is not None
                    else torch.zeros(output.shape[-1])
                )
                self.name, self.bias = name, b.cpu()
                self.weight_part.append((output.detach().float() - b).flatten(1).cpu())
                break
        self.outputs.clear()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _classifier_result(
    measured: float,
    per_batch: list[float],
    logits: list[torch.Tensor],
    num_classes: int | None,
    final: _FinalLayerProbe | None,
) -> InitialLossResult:
    z = torch.cat(logits) if logits else None
    if z is not None and z.ndim == 2:
        if num_classes is not None and z.shape[1] != num_classes:
            raise SanityError(
                f"{CHECK}: the model outputs {z.shape[1]} values per sample but num_classes={num_classes}; "
                "pass the number of classes the final layer predicts"
            )
        num_classes = z.shape[1]
    if num_classes is None or num_classes < 2:
        raise SanityError(
            f"{CHECK}: cannot tell the number of classes (got {num_classes}); pass num_classes=C (2 or more)"
        )
    expected = math.log(num_classes)
    logit_std = class_bias = None
    layer = final.name if final is not None and final.bias is not None else None
    if final is not None and final.bias is not None and final.weight_part:
        logit_std = float(torch.cat(final.weight_part).std())
        class_bias = float(final.bias.std())
    elif z is not None and z.ndim == 2 and len(z) > 1:
        logit_std = float(z.std(dim=0).mean())
        class_bias = float(z.mean(dim=0).std())
    status, reason, fix = _judge_classifier(measured, expected, logit_std, class_bias, layer)
    verdict = Verdict(
        CHECK, status, f"{measured:.4g}", f"log({num_classes}) = {expected:.4g}", reason, fix
    )
    head = HeadCheck("loss", "softmax", measured, expected, status)
    return InitialLossResult(
        measured, expected, per_batch, [head], verdict, logit_std, class_bias, num_classes, layer
    )


def _judge_classifier(
    measured: float,
    expected: float,
    logit_std: float | None,
    class_bias: float | None,
    layer: str | None,
) -> tuple[Status, str, str]:
    if not math.isfinite(measured):
        return _NOT_FINITE
    rel = (measured - expected) / expected
    if abs(rel) <= PASS_TOL:
        return "PASS", f"within {PASS_TOL:.0%} of log C: the model starts unsure of every class", ""
    status: Status = "WARN" if abs(rel) <= WARN_TOL else "FAIL"
    if rel < 0:
        return (
            status,
            f"{-rel:.0%} below log C: the model is better than chance before any training",
            "check that the labels do not leak into the inputs, the model is not already trained, "
            "and the loss is a mean over the batch",
        )
    where = f"final layer '{layer}'" if layer else "final layer"
    if layer is None or logit_std is None or class_bias is None:
        # Without the layer the weight and bias parts cannot be told apart.
        return (
            status,
            f"{rel:.0%} above log C: the logits are too large at initialisation "
            "(the final layer's scale or bias)",
            "scale down the final layer's weights (e.g. x0.1 or zeros) and set its bias to 0",
        )
    parts = f"weights give logits of std {logit_std:.3g}, the bias a spread of {class_bias:.3g}"
    if class_bias > logit_std:
        return (
            status,
            f"{rel:.0%} above log C: the bias of the {where} favours some classes ({parts})",
            f"initialise the bias of the {where} to 0 (or to log class priors for imbalanced data)",
        )
    return (
        status,
        f"{rel:.0%} above log C: the weights of the {where} are too large ({parts})",
        f"scale down the weights of the {where} (e.g. multiply by 0.1 or initialise them to 0)",
    )


# -- multi-label, binary cross-entropy per class ---------------------------


def _bce(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of probabilities ``p`` against target frequencies ``q`` (0 log 0 = 0)."""
    p = p.double().clamp(1e-12, 1 - 1e-12)
    q = q.double()
    return -(q * p.log() + (1 - q) * (1 - p).log())


def _sigmoid_result(
    measured: float,
    per_batch: list[float],
    logits: list[torch.Tensor],
    targets: list[torch.Tensor],
    num_classes: int | None,
    final: _FinalLayerProbe | None,
) -> InitialLossResult:
    z = torch.cat(logits) if logits else None
    if z is not None and z.ndim == 2:
        num_classes = z.shape[1]
    if num_classes is None or num_classes < 1:
        raise SanityError(
            f"{CHECK}: cannot tell the number of classes (got {num_classes}); pass num_classes=C"
        )
    layer = final.name if final is not None and final.bias is not None else None
    bias = (
        final.bias
        if final is not None and final.bias is not None and len(final.bias) == num_classes
        else torch.zeros(num_classes)
    )
    y = torch.cat(targets) if targets else None
    if y is None or y.shape[1] != num_classes:
        q = torch.full((num_classes,), 0.5)  # no multi-hot targets seen: p = 0.5 costs log 2 anyway
        prior = math.log(2)
    else:
        q = y.mean(dim=0)
        prior = float(_bce(q, q).mean())
    # What the initialisation implies: every tag at probability sigmoid(bias), scored
    # against the tags' frequencies. A zero bias gives log 2; a bias at the prior, its entropy.
    expected = float(_bce(q, torch.sigmoid(bias)).mean())
    logit_std = class_bias = None
    if final is not None and final.weight_part:
        logit_std = float(torch.cat(final.weight_part).std())
        class_bias = float(bias.std()) if num_classes > 1 else 0.0
    status, reason, fix = _judge_sigmoid(measured, expected, prior, bias, logit_std, layer)
    zero = bool(bias.abs().max() <= 0.25)
    shown = (
        f"log 2 = {math.log(2):.4g} (logits near 0)"
        if zero
        else f"{expected:.4g} (the final layer's bias against the tag frequencies)"
    )
    verdict = Verdict(CHECK, status, f"{measured:.4g}", shown, reason, fix)
    head = HeadCheck(
        "loss", "sigmoid", measured, expected, status, f"tag prior entropy {prior:.3g}"
    )
    return InitialLossResult(
        measured, expected, per_batch, [head], verdict, logit_std, class_bias, num_classes, layer
    )


def _judge_sigmoid(
    measured: float,
    expected: float,
    prior: float,
    bias: torch.Tensor,
    logit_std: float | None,
    layer: str | None,
) -> tuple[Status, str, str]:
    where = f"final layer '{layer}'" if layer else "final layer"
    prior_fix = (
        f"initialise the bias of the {where} to 0, or to log(q/(1-q)) with q each class's "
        "tag frequency (the prior)"
    )
    if not math.isfinite(measured):
        return _NOT_FINITE
    log2 = math.log(2)
    off = (expected - log2) / log2
    if off > PASS_TOL:
        # The bias alone already costs more than predicting 0.5 for every tag.
        status: Status = "WARN" if off <= WARN_TOL else "FAIL"
        return (
            status,
            f"the bias of the {where} sets tag probabilities far from the tag frequencies "
            f"(their cross-entropy {expected:.3g} is above log 2 = {log2:.3g})",
            prior_fix,
        )
    rel = (measured - expected) / expected
    if abs(rel) <= PASS_TOL:
        reason = f"within {PASS_TOL:.0%} of what the initialisation implies"
        if bool(bias.abs().max() <= 0.25) and prior < (1 - PASS_TOL) * log2:
            reason += (
                f"; the tags are sparse: a bias of log(q/(1-q)) per class would start at the "
                f"prior's entropy {prior:.3g} and save the first steps spent learning the frequencies"
            )
        return "PASS", reason, ""
    status = "WARN" if abs(rel) <= WARN_TOL else "FAIL"
    if rel < 0:
        return (
            status,
            f"{-rel:.0%} below what the initialisation implies: the model knows the tags before "
            "any training",
            "check that the tags do not leak into the inputs, the model is not already trained, "
            "and the loss is a mean over the batch",
        )
    spread = f" (they give logits of std {logit_std:.3g})" if logit_std is not None else ""
    return (
        status,
        f"{rel:.0%} above what the initialisation implies: the weights of the {where} are too "
        f"large{spread}",
        f"scale down the weights of the {where} (e.g. multiply by 0.1 or initialise them to 0)",
    )


# -- detector ------------------------------------------------------------


def _judge(p: HeadPrior) -> HeadCheck:
    if p.expected is None:
        return HeadCheck(p.name, p.kind, p.measured, None, None, p.note)
    if p.kind == "focal_prior" and p.bias_prob is not None:
        return _judge_prior(p.measured, p.expected, p.bias_prob, p.layer)
    return _judge_head(p.name, p.kind, p.measured, p.expected, p.note)


def _judge_head(name: str, kind: str, measured: float, expected: float, note: str) -> HeadCheck:
    if not math.isfinite(measured):
        return HeadCheck(name, kind, measured, expected, "FAIL", "not finite")
    rel = abs(measured - expected) / expected
    status: Status = "PASS" if rel <= PASS_TOL else "WARN" if rel <= WARN_TOL else "FAIL"
    return HeadCheck(name, kind, measured, expected, status, note)


def _judge_prior(mean_prob: float, prior: float, bias_prior: float, layer: str) -> HeadCheck:
    ratio = max(mean_prob / prior, prior / mean_prob) if mean_prob > 0 else math.inf
    status: Status = "PASS" if ratio <= PRIOR_PASS else "WARN" if ratio <= PRIOR_WARN else "FAIL"
    bias_off = max(bias_prior / prior, prior / bias_prior) > PRIOR_PASS
    if status == "PASS":
        note = f"mean sigmoid of '{layer}' matches the prior {prior:g}"
    elif bias_off:
        note = f"the bias of '{layer}' sets a prior of {bias_prior:.3g}, not {prior:g}"
    else:
        note = (
            f"the bias of '{layer}' sets the prior {bias_prior:.3g}, but its weights are too large "
            "and move the mean probability away from it"
        )
    return HeadCheck("foreground probability", "focal_prior", mean_prob, prior, status, note)


def _detector_result(
    measured: float, per_batch: list[float], heads: list[HeadCheck], num_classes: int | None
) -> InitialLossResult:
    checked = [h for h in heads if h.status is not None]
    shown = ", ".join(f"{h.name} {h.measured:.3g}" for h in checked) or f"total {measured:.4g}"
    expected_shown = (
        ", ".join(f"{h.name} {h.expected:.3g}" for h in checked if h.expected is not None) or "-"
    )
    bad = [h for h in checked if h.status != "PASS"]
    reasons, fixes = [], []
    for h in bad:
        if h.kind == "focal_prior":
            reasons.append(
                f"mean foreground probability {h.measured:.3g} vs prior {h.expected:.3g}: {h.note}"
            )
            fixes.append(
                f"initialise the classification conv's bias to -log((1-p)/p) with p={h.expected:g} "
                "and its weights small (normal, std 0.01)"
            )
            continue
        above = h.expected is not None and h.measured > h.expected
        reasons.append(
            f"{h.name} {h.measured:.3g} is {'above' if above else 'below'} {h.expected:.3g}"
        )
        fixes.append(
            f"scale down the final layer of the {h.name} head (small weights, zero bias)"
            if above
            else f"set the bias of the {h.name} head's final layer to 0: it is confident "
            "before training (a background bias lowers this loss while hiding the objects)"
        )
    status: Status = worst(h.status for h in checked if h.status is not None)
    reason, fix = "; ".join(reasons), "; ".join(dict.fromkeys(fixes))
    if not math.isfinite(measured):
        status, reason = "FAIL", "a loss term is not finite at initialisation"
        fix = "look for empty targets, degenerate boxes, or inputs with NaN/Inf"
    elif not checked:
        status = "WARN"
        reason = f"no head with a known expectation was found (terms: {', '.join(h.name for h in heads)})"
        fix = "name the loss terms like torchvision's detectors, or check them by hand"
    elif not bad:
        reason = "every head starts where its initialisation implies"
    verdict = Verdict(CHECK, status, shown, expected_shown, reason, fix)
    return InitialLossResult(measured, None, per_batch, heads, verdict, num_classes=num_classes)
