"""The command line reads its arguments and checks recipes before it imports torch.

``tunekit --help`` or a typo in a recipe must answer in a fraction of a
second, not after seconds of importing torch, torchvision, optuna and plotly.
Each check runs in a fresh interpreter, since this test process has them all
imported already.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tunekit._lazy import public_names

REPO = Path(__file__).resolve().parents[1]
TUNEKIT = REPO / "tunekit"

HEAVY = ("torch", "torchvision", "optuna", "plotly", "tensorboard", "sklearn", "pycocotools")

#: Packages whose public names are imported on first use (tunekit._lazy): every one but
#: tunekit.integrations, which has only optional submodules.
LAZY_PACKAGES = (
    "tunekit",
    *sorted(
        f"tunekit.{p.parent.name}"
        for p in TUNEKIT.glob("*/__init__.py")
        if "attach(" in p.read_text()
    ),
)


def heavy_after(code: str) -> dict:
    """Runs ``code`` in a fresh interpreter; returns what it printed last (JSON) and the heavy
    modules it had imported by then."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps({{"heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_help_of_every_command_imports_no_heavy_module() -> None:
    out = heavy_after(
        """
        import argparse, contextlib, io
        from tunekit.cli import build_parser, main

        def paths(parser, prefix):
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, child in action.choices.items():
                        yield [*prefix, name]
                        yield from paths(child, [*prefix, name])

        for argv in [[], *paths(build_parser(), [])]:
            with contextlib.redirect_stdout(io.StringIO()) as text:
                try:
                    main([*argv, "--help"])
                except SystemExit as exc:
                    assert exc.code == 0, (argv, exc.code)
            assert "usage: tunekit" in text.getvalue(), argv
        """
    )
    assert out["heavy"] == []


def test_recipe_and_study_errors_import_no_heavy_module(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: bad\ntrain:\n  epohcs: 2\n")
    study = tmp_path / "bad_study.yaml"
    study.write_text(
        f"name: bad\nrecipe: {REPO / 'recipes' / 'digits.yaml'}\nmetric: val/top1\n"
        "space:\n  optim.lr: {type: log_uniform, low: 0.001, high: 1.0}\n"
        "stages:\n  - {name: coarse, trials: 2, epochs: 1}\nworkerz: 2\n"
    )
    out = heavy_after(
        f"""
        import contextlib, io
        from tunekit.cli import main
        from tunekit.config import load_recipe
        from tunekit.errors import TunekitError

        try:
            load_recipe({str(recipe)!r})
        except TunekitError as exc:
            assert "epohcs" in str(exc), exc
        else:
            raise AssertionError("the bad recipe was accepted")
        out = {str(tmp_path / "out")!r}
        for argv, bad_key in (
            (["train", "--recipe", {str(recipe)!r}, "--out", out], "epohcs"),
            (["sanity", "--recipe", {str(recipe)!r}, "--out", out], "epohcs"),
            (["lr-find", "--recipe", {str(recipe)!r}, "--out", out], "epohcs"),
            (["search", "--study", {str(study)!r}, "--out", out], "workerz"),
        ):
            with contextlib.redirect_stderr(io.StringIO()) as err:
                assert main(argv) == 2, argv
            assert bad_key in err.getvalue(), err.getvalue()
        """
    )
    assert out["heavy"] == []


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_public_names_resolve(package: str) -> None:
    mod = importlib.import_module(package)
    # The TYPE_CHECKING imports are the one list: __all__ holds them and each resolves.
    listed = set(public_names(mod.__file__))
    assert listed, f"{package} lists no public names"
    assert listed <= set(mod.__all__), listed - set(mod.__all__)
    assert set(mod.__all__) - listed <= set(vars(mod)), set(mod.__all__) - listed - set(vars(mod))
    for name in mod.__all__:
        assert getattr(mod, name) is not None
        assert name in dir(mod)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        _ = mod.not_a_name
