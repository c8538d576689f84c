"""The command-line arguments that several commands share: a recipe, its overrides, an output.

Commands live with their concept (``tunekit/<concept>/cli.py``) and ``tunekit.cli``
wires them; both import this module, which imports nothing heavy (see
tests/test_cli_imports.py).
"""

from __future__ import annotations

import argparse

OVERRIDES_HELP = "override a recipe field, e.g. --set optim.lr=0.05 (repeatable)"


def add_overrides_arg(p: argparse.ArgumentParser, *, help: str = OVERRIDES_HELP) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_recipe_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--recipe FILE``, ``--set KEY=VALUE`` and ``--out DIR``: what every recipe command takes."""
    p.add_argument("--recipe", required=required, help="recipe YAML (see recipes/)")
    add_overrides_arg(p)
    p.add_argument(
        "--out", default=None, help="output directory (default: <output_dir>/<name>-<time>)"
    )
