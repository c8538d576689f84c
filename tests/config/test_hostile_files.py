"""Files that are not what a recipe should be: each is one line and exit code 2, quickly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tunekit.config import load_recipe, load_yaml, read_yaml
from tunekit.config._yaml import MAX_DEPTH, MAX_NODES
from tunekit.errors import ConfigError


def alias_bomb(levels: int = 9, key: str = "x") -> str:
    """A few hundred bytes of anchors that expand to 9**levels values ("billion laughs")."""
    lines = [f'{key}0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"{key}{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def _recipe_with_bomb() -> str:
    body = alias_bomb().replace("\n", "\n    ")
    return f"data:\n  kwargs:\n    {body.rstrip()}\n"


def _error(path: Path | str, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_recipe(path, overrides)
    text = str(info.value)
    assert len(text.splitlines()) == 1, text
    return text


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


# -- in a real process: the answer comes quickly, as one line, with no traceback


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_recipe_with_bomb(), f"more than {MAX_NODES} values once aliases are expanded"),
        ("model:\n  kwargs:\n    x: " + "[" * 5000 + "]" * 5000 + "\n", "nesting deeper than"),
        ("name: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "nesting deeper than"),
    ],
    ids=["alias-bomb", "deep-brackets", "deep-mappings"],
)
def test_hostile_recipe_in_a_real_process(
    tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]], text: str, needle: str
) -> None:
    # Before the limits, the bomb ran for minutes and the brackets ended in a RecursionError.
    recipe = _write(tmp_path, text)
    start = time.monotonic()
    r = cli("train", "--recipe", str(recipe), "--out", str(tmp_path / "run"), timeout=120)
    assert time.monotonic() - start < 120
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tunekit: error: {recipe}: "), r.stderr
    assert needle in lines[0]
    assert not (tmp_path / "run").exists()


def test_binary_recipe_in_a_real_process(
    tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    recipe = tmp_path / "weights.pt"
    recipe.write_bytes(bytes(range(256)) * 16)
    r = cli("train", "--recipe", str(recipe), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        f"tunekit: error: {recipe}: not a UTF-8 text file (byte 0x80 at position 128 is not "
        "UTF-8): is this the right file? Save YAML as UTF-8"
    )


# -- what is read at all


def test_a_directory(tmp_path: Path) -> None:
    assert "is a directory, not a YAML file" in _error(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert "is not a regular file" in _error(fifo)  # and it does not wait for a writer


def test_an_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "name: x\n")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads it anyway; the error is what matters
        real_open = Path.open

        def refuse(self: Path, *args: object, **kwargs: object) -> object:
            if self == path:
                raise PermissionError(13, "Permission denied")
            return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "open", refuse)
    line = _error(path)
    assert str(path) in line and "permission denied" in line


def test_a_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.truncate(3 * 2**20)  # sparse: nothing is written
    line = _error(path)
    assert "the file is 3.0 MiB; at most 1 MiB is read" in line


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("name: x\n".encode("utf-16"), "byte 0xff at position 0 is not UTF-8"),
        (b"name: caf\xe9\n", "byte 0xe9 at position 9 is not UTF-8"),
        (b"name: a\x00b\n", "the character #x0000 at position 7 is not allowed"),
    ],
    ids=["utf-16", "latin-1", "nul"],
)
def test_not_utf8_text(tmp_path: Path, data: bytes, needle: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(data)
    assert needle in _error(path)


def test_utf8_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes("\ufeffname: café\n".encode())
    assert load_recipe(path).name == "café"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "got the single value 'hello'" in _error(_write(tmp_path, "hello\n"))
    assert "got a list" in _error(_write(tmp_path, "- a\n"))


def test_more_than_one_document(tmp_path: Path) -> None:
    line = _error(_write(tmp_path, "name: a\n---\nname: b\n"))
    assert "a second YAML document starts at line 2" in line and "remove the '---'" in line


def test_python_tags_are_refused(tmp_path: Path) -> None:
    line = _error(_write(tmp_path, "name: !!python/object/apply:os.system [echo hi]\n"))
    assert "the tag !!python/object/apply:os.system at line 1" in line and "not allowed" in line


def test_tabs_and_unclosed_brackets_say_where(tmp_path: Path) -> None:
    assert "indents with spaces, not tabs" in _error(_write(tmp_path, "optim:\n\tlr: 0.1\n"))
    line = _error(_write(tmp_path, "name: x\ntrain: {epochs: 3\n"))
    assert "at line 3" in line and "flow mapping that starts at line 2" in line


# -- empty files


def test_an_empty_recipe_is_an_error_and_an_explicit_empty_mapping_is_not(tmp_path: Path) -> None:
    # Before, an empty file trained the defaults and exited 0.
    line = _error(_write(tmp_path, ""))
    assert "the file is empty" in line and "recipes/digits.yaml" in line
    assert "the file is empty" in _error(_write(tmp_path, "# to do\n\n"))
    assert load_recipe(_write(tmp_path, "{}\n")).model.name == "small_cnn"


def test_read_yaml_names_no_example_unless_given(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"the file is empty \(no fields, only blank lines"):
        read_yaml(_write(tmp_path, "\n"))


# -- duplicate keys, anchors, aliases


@pytest.mark.parametrize(
    ("text", "field", "where"),
    [
        ("optim: {lr: 0.1}\noptim: {lr: 0.2}\n", "optim", "lines 1 and 2"),
        ("optim:\n  lr: 0.1\n  lr: 0.2\n", "optim.lr", "lines 2 and 3"),
        ("optim: {lr: 0.1, lr: 0.2}\n", "optim.lr", "line 1, columns 9 and 18"),
        (
            "data:\n  kwargs:\n    classes: [{id: 1, id: 2}]\n",
            "data.kwargs.classes.0.id",
            "line 3, columns 16 and 23",
        ),
        ("train: {epochs: 3, 'epochs': 4}\n", "train.epochs", "line 1, columns 9 and 20"),
        ("data:\n  kwargs: {1: a, 1.0: b}\n", "data.kwargs.1.0", "line 2, columns 12 and 18"),
    ],
    ids=["section", "nested", "flow", "in-a-list", "quoted", "equal-numbers"],
)
def test_duplicate_keys(tmp_path: Path, text: str, field: str, where: str) -> None:
    # Before, the last value won silently.
    line = _error(_write(tmp_path, text))
    assert f"field '{field}'" in line and f"appears twice ({where})" in line


def test_merge_keys_may_override_what_they_merge() -> None:
    text = "base: &b {lr: 0.1, momentum: 0.5}\noptim: {<<: *b, lr: 0.2}\n"
    assert load_yaml(text)["optim"] == {"lr": 0.2, "momentum": 0.5}


def test_a_few_aliases_are_fine() -> None:
    text = "a: &a [1, 2]\nb: [*a, *a, *a]\n"
    assert load_yaml(text)["b"] == [[1, 2]] * 3


def test_alias_bomb_is_refused_before_it_is_built() -> None:
    start = time.monotonic()
    with pytest.raises(ConfigError, match="once aliases are expanded"):
        load_yaml(alias_bomb(), file="bomb.yaml")
    assert time.monotonic() - start < 5


def test_an_alias_cycle_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"refers to a section that contains it \(a cycle\)"):
        load_yaml("a: &a {b: [*a]}\n")


def test_aliases_cannot_nest_past_the_depth_limit() -> None:
    # Each line nests the previous one once more: shallow as written, deep once expanded.
    lines = ["l0: &l0 [1]"] + [f"l{i}: &l{i} [*l{i - 1}]" for i in range(1, MAX_DEPTH + 5)]
    with pytest.raises(ConfigError, match="deeper than 64 levels once aliases are expanded"):
        load_yaml("\n".join(lines))


def test_nesting_just_under_the_limit_loads() -> None:
    depth = MAX_DEPTH - 1
    value = load_yaml("[" * depth + "]" * depth)
    for _ in range(depth - 1):
        value = value[0]
    assert value == []


def test_too_many_values_without_aliases(tmp_path: Path) -> None:
    text = "data:\n  kwargs:\n    x: [" + ", ".join(["1"] * (MAX_NODES + 10)) + "]\n"
    line = _error(_write(tmp_path, text))
    assert f"more than {MAX_NODES} values" in line


# -- --set values get the same limits


def test_overrides_get_the_same_limits() -> None:
    digits = Path(__file__).resolve().parents[2] / "recipes" / "digits.yaml"
    bomb = "{" + alias_bomb(6).strip().replace("\n", ", ") + "}"
    line = _error(digits, [f"data.kwargs={bomb}"])
    assert "field 'data.kwargs" in line and "in the override's value" in line
    line = _error(digits, ["data." + ".".join(["a"] * 100) + "=1"])
    assert "field '--set'" in line and "101 levels deep; at most 64 allowed" in line
    assert "appears twice" in _error(digits, ["optim={lr: 0.1, lr: 0.2}"])
    # Text that is not YAML stays text.
    assert load_recipe(digits, ["name=a: b: c"]).name == "a: b: c"


# -- the config layer stays light


def test_config_imports_no_heavy_packages() -> None:
    code = (
        "import sys, tunekit.config; "
        "heavy = [m for m in ('torch', 'torchvision', 'optuna') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
