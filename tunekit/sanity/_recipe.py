"""All three checks on a recipe's own model and data, built the way training builds them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tunekit.config import Recipe
from tunekit.core import DistInfo, resolve_device
from tunekit.engine import build_optimizer, effective_lr
from tunekit.tasks import get_task

from ._base import Objective, SanityError, Status, Verdict, worst
from ._initial_loss import InitialLossResult, check_initial_loss
from ._lr_finder import LRCheckResult, check_learning_rate
from ._overfit import OverfitResult, overfit_small_sample
from ._rules import DEFAULT_RULE

FORMAT = "tunekit-sanity-v1"


@dataclass
class SanityOptions:
    """How long each probe runs (the defaults follow the recipe's steps 1 to 3)."""

    initial_batches: int = 4
    overfit_batches: int = 5
    overfit_steps: int = 300
    loss_fraction: float = 0.2
    start_lr: float = 1e-7
    end_lr: float = 10.0
    lr_iters: int = 100
    cross_check_iters: int = 100
    cross_check_weight_decay: float = 1e-4
    # None: the recipe's training length, at most REFINE_MAX_ITERS; 0: no refinement
    refine_iters: int | None = None
    held_out_batches: int = 16  # validation batches the refinement judges on
    rule: str = DEFAULT_RULE
    cross_check_rules: tuple[str, ...] | None = None  # None: every rule's suggestion joins
    ratio_steps: int = 10
    checks: tuple[str, ...] = ("initial_loss", "overfit", "lr")


@dataclass
class SanityReport:
    """The results of the checks that ran on one recipe, plus what a search starts from."""

    recipe: str
    task: str
    optimizer: str
    batch_size: int
    lr_per_256: bool
    initial: InitialLossResult | None = None
    overfit: OverfitResult | None = None
    lr: LRCheckResult | None = None
    wall_s: dict[str, float] = field(default_factory=dict)

    @property
    def verdicts(self) -> list[Verdict]:
        out: list[Verdict] = []
        if self.initial is not None:
            out.append(self.initial.verdict)
        if self.overfit is not None:
            out.append(self.overfit.verdict)
        if self.lr is not None:
            out.extend(self.lr.verdicts)
        return out

    @property
    def status(self) -> Status:
        return worst(v.status for v in self.verdicts)

    def recipe_lr(self, lr: float) -> float:
        """``lr`` in the units of the recipe's ``optim.lr`` (undoing the linear scaling rule)."""
        return lr * 256 / self.batch_size if self.lr_per_256 else lr

    def to_dict(self) -> dict[str, Any]:
        """The content of ``sanity.json`` (see docs/sanity.md for the format)."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "recipe": self.recipe,
            "task": self.task,
            "status": self.status,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "wall_s": self.wall_s,
        }
        if self.initial is not None:
            out["initial_loss"] = self.initial.to_dict()
        if self.overfit is not None:
            out["overfit"] = self.overfit.to_dict()
        if self.lr is not None:
            lr = self.lr.to_dict()
            chosen = self.lr.chosen
            lr["optimizer"] = self.optimizer
            lr["field"] = "optim.lr"
            lr["recipe_value"] = self.recipe_lr(chosen) if chosen is not None else None
            out["lr"] = lr
            space = dict(self.lr.search_space)
            if "lr" in space:
                space["lr"] = [self.recipe_lr(x) for x in space["lr"]]
            out["search_space"] = space
        return out


def plain_recipe(recipe: Recipe) -> Recipe:
    """The recipe with data augmentation, dropout, stochastic depth and mixup/cutmix off.

    Label smoothing stays (the initial-loss check accounts for it; the overfit
    check turns it off itself); weight decay is set by each probe.
    """
    data = recipe.model_dump()
    aug = data["data"]["augment"]
    aug.update(hflip=False, random_crop_padding=0, randaugment=False, random_erasing=0.0)
    data["model"].update(dropout=0.0, drop_path=0.0)
    data["regularization"].update(mixup_alpha=0.0, cutmix_alpha=0.0)
    return Recipe.model_validate(data)


@dataclass
class ProbeParts:
    """What every probe of a recipe works on, built once: the model as initialised, its
    optimizer, the training and validation loaders, the objective and the class count."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: Any
    val_loader: Any
    objective: Objective
    num_classes: int | None


def probe_parts(recipe: Recipe, *, file: str | None = None) -> ProbeParts:
    """Builds :class:`ProbeParts` from ``recipe`` with augmentation and dropout off
    (:func:`plain_recipe`), seeded and deterministic as the training would be."""
    from tunekit.run import build_components, configure_determinism

    dist = DistInfo(device=resolve_device(recipe.train.device))
    configure_determinism(recipe, dist.device)
    comp = build_components(plain_recipe(recipe), dist, file=file)
    # A loss on the logits where the task has one (its kind sets the initial-loss check's
    # expectation), else the task's own loss terms (a detector's, judged head by head).
    loss_fn = get_task(recipe.task).probe_loss(recipe, comp.task)
    objective = Objective(
        loss_fn,
        losses=None if loss_fn is not None else comp.task.losses,
        to_device=comp.task.to_device,
        grad_clip=recipe.optim.grad_clip,
    )
    return ProbeParts(
        comp.model,
        _optimizer(comp.model, recipe, file),
        comp.train_loader,
        comp.val_loader,
        objective,
        comp.bundle.num_classes,
    )


def run_sanity(
    recipe: Recipe,
    *,
    options: SanityOptions | None = None,
    file: str | None = None,
    log: Callable[[str], None] | None = None,
) -> SanityReport:
    """Runs the initial-loss, overfit and LR checks on ``recipe``'s model and data.

    The model is built once; every probe restores it, so each starts from the
    same initialisation.

    Example:
        >>> report = run_sanity(load_recipe("recipes/digits.yaml"))  # doctest: +SKIP
        >>> report.status, report.lr.chosen  # doctest: +SKIP
        ('PASS', 0.1)
    """
    opts = options or SanityOptions()
    say = log or (lambda _msg: None)
    parts = probe_parts(recipe, file=file)
    model, optimizer, objective = parts.model, parts.optimizer, parts.objective
    num_classes = parts.num_classes
    report = SanityReport(
        recipe.name,
        recipe.task,
        recipe.optim.name,
        recipe.train.batch_size,
        recipe.optim.lr_per_256,
    )
    loader = parts.loader

    if "initial_loss" in opts.checks:
        say("initial loss")
        started = time.perf_counter()
        objective.what = "initial loss"
        report.initial = check_initial_loss(
            model,
            loader,
            num_classes=num_classes,
            num_batches=opts.initial_batches,
            objective=objective,
        )
        report.wall_s["initial_loss"] = time.perf_counter() - started
    if "overfit" in opts.checks:
        lr = effective_lr(recipe.optim, recipe.train.batch_size)
        say(f"overfit {opts.overfit_batches} batches at LR {lr:.3g}")
        started = time.perf_counter()
        objective.what = "overfit"
        report.overfit = overfit_small_sample(
            model,
            loader,
            optimizer=optimizer,
            num_batches=opts.overfit_batches,
            max_steps=opts.overfit_steps,
            loss_fraction=opts.loss_fraction,
            objective=objective,
        )
        report.wall_s["overfit"] = time.perf_counter() - started
    if "lr" in opts.checks:
        say(
            f"LR range test ({opts.lr_iters} steps) and cross-check ({opts.cross_check_iters} steps per LR)"
        )
        started = time.perf_counter()
        objective.what = "lr"
        report.lr = check_learning_rate(
            model,
            optimizer,
            loader,
            start_lr=opts.start_lr,
            end_lr=opts.end_lr,
            num_iter=opts.lr_iters,
            cross_check_iter=opts.cross_check_iters,
            weight_decay=opts.cross_check_weight_decay,
            refine_iter=(
                opts.refine_iters
                if opts.refine_iters is not None
                else refine_length(recipe, loader)
            ),
            held_out=parts.val_loader,
            held_out_batches=opts.held_out_batches,
            rule=opts.rule,
            cross_check_rules=opts.cross_check_rules,
            ratio_steps=opts.ratio_steps,
            objective=objective,
        )
        report.wall_s["lr"] = time.perf_counter() - started
    return report


#: The refinement's runs are as long as the recipe's training up to this many steps; a longer
#: training is compressed into this many (its cosine decay too).
REFINE_MAX_ITERS = 300


def refine_length(recipe: Recipe, loader: Any) -> int:
    """Steps of the recipe's training (epochs x batches an epoch), between 10 and
    :data:`REFINE_MAX_ITERS`: the length of each refinement run.

    The best LR depends on how long the training is (a short one favours
    other LRs than a long one), so the refinement trains as long as the recipe
    does when it can afford to.
    """
    try:
        per_epoch = len(loader)
    except TypeError:  # an iterable without a length
        return REFINE_MAX_ITERS
    if recipe.train.max_steps_per_epoch is not None:
        per_epoch = min(per_epoch, recipe.train.max_steps_per_epoch)
    return max(10, min(int(per_epoch * recipe.train.epochs), REFINE_MAX_ITERS))


def _optimizer(model: nn.Module, recipe: Recipe, file: str | None) -> torch.optim.Optimizer:
    if not any(p.requires_grad for p in model.parameters()):
        raise SanityError(
            "the model has no trainable parameters (everything is frozen); "
            "set model.freeze_to to an earlier stage or remove it",
            file=file,
            field="model.freeze_to",
        )
    # The probes step on one batch at a time, so the LR rule scales by batch_size alone.
    return build_optimizer(
        model,
        recipe.optim,
        recipe.train.batch_size,
        stages=get_task(recipe.task).stages(recipe, model),
    )
