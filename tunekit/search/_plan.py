"""A study loaded and checked, with nothing written (SearchPlan), then opened (SearchContext).

A command checks its arguments and the first stage's data against the plan, so
that a mistake leaves no study directory or journal behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tunekit.errors import TunekitError
from tunekit.outputs import check_output_dir

from ._objective import load_recipe_data
from ._space import Space, space_from_specs
from ._stages import StagedSearch
from ._storage import journal_path, masked, open_storage
from ._study import Study, load_study, resolve_recipe_path
from ._validate import check_study, ranges_from_sanity


@dataclass
class SearchPlan:
    """A study loaded and checked, with nothing written yet; :meth:`open` creates its storage.

    A command checks its arguments and the first stage's data against the plan, so
    that a mistake leaves no study directory or journal behind.
    """

    study: Study
    study_file: Path
    overrides: list[str]
    recipe_path: Path
    recipe_data: dict[str, Any]
    study_dir: Path
    storage_url: str | None
    space: Space
    from_sanity: str | None = None

    def open(self, *, create: bool = True) -> SearchContext:
        """Opens (or, with ``create``, creates) the study's storage.

        Raises:
            TunekitError: ``create`` is False and no search has run on this storage yet.
        """
        if not create:
            self._check_exists()
        backend = open_storage(self.storage_url, self.study_dir, self.study.liveness)
        search = StagedSearch(self.study, backend, base_space=self.space)
        if not create and search.existing(search.stages[0]) is None:
            raise self._missing(
                f"storage {masked(self.storage_url or '')} holds no study "
                f"{search.stages[0].study_name!r}"
            )
        plan = {f.name: getattr(self, f.name) for f in fields(SearchPlan)}
        return SearchContext(**{**plan, "overrides": list(self.overrides)}, search=search)

    def _check_exists(self) -> None:
        path = journal_path(self.storage_url, self.study_dir)
        if path is not None and not path.is_file():
            raise self._missing(f"no journal file {path}")

    def _missing(self, what: str) -> TunekitError:
        return TunekitError(
            f"study {self.study.name!r} has not been searched yet ({what}); run "
            f"`tunekit search --study {self.study_file}` first, or give its --out or --storage",
            field="--study",
        )


@dataclass
class SearchContext(SearchPlan):
    """A plan whose storage is open: everything a worker needs, and the staged search on it."""

    search: StagedSearch = field(kw_only=True)

    @property
    def storage_desc(self) -> str:
        return (
            masked(self.storage_url) if self.storage_url else str(self.study_dir / "study.journal")
        )

    def worker_args(self) -> list[str]:
        """The ``tunekit search`` arguments that reopen this same study (for child processes)."""
        args = ["search", "--study", str(self.study_file), "--out", str(self.study_dir)]
        if self.storage_url:
            args += ["--storage", self.storage_url]
        for o in self.overrides:
            args += ["--set", o]
        if self.from_sanity:
            args += ["--from-sanity", self.from_sanity]
        return args


def prepare_search(
    study: str,
    *,
    overrides: list[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    from_sanity: str | None = None,
) -> SearchPlan:
    """Loads a study and checks it against its recipe; writes nothing."""
    cfg, path = load_study(study, overrides)
    recipe_path = resolve_recipe_path(cfg.recipe, path)
    recipe_data = load_recipe_data(recipe_path)
    study_dir = Path(out) if out else Path(cfg.output_dir) / cfg.name
    check_output_dir(study_dir, field="--out" if out else "output_dir")
    space = space_from_specs(cfg.space)
    if from_sanity:
        space = ranges_from_sanity(space, from_sanity)
    check_study(cfg, recipe_data, space, file=str(path), recipe_file=str(recipe_path))
    return SearchPlan(
        cfg,
        path,
        list(overrides or []),
        recipe_path,
        recipe_data,
        study_dir,
        storage,
        space,
        from_sanity,
    )


def open_search(
    study: str,
    *,
    overrides: list[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    from_sanity: str | None = None,
    create: bool = True,
) -> SearchContext:
    """Loads a study, checks it, and opens (or, with ``create``, creates) its storage.

    Example:
        >>> ctx = open_search("digits", out="runs/search/digits")  # doctest: +SKIP
        >>> run_worker(ctx)  # doctest: +SKIP
    """
    plan = prepare_search(
        study, overrides=overrides, out=out, storage=storage, from_sanity=from_sanity
    )
    return plan.open(create=create)
