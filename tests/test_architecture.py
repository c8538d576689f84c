"""The house rules of docs/architecture.md, checked on the source: packages import only the
layers below them, modules form no import circle, and nothing imports a private name of
another tunekit package, of Optuna or of torch, or reaches into their private attributes."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tunekit"

#: Each top-level module or package of tunekit and its layer: a package imports only
#: packages of lower layers (never one of its own layer). docs/architecture.md draws this.
LAYERS: dict[str, int] = {
    "errors": 0,
    "_lazy": 0,
    "core": 1,
    "outputs": 1,
    "cliargs": 2,
    "config": 2,
    "shapes": 2,
    "data": 3,
    "engine": 4,
    "models": 5,
    "diagnostics": 6,
    "tasks": 6,
    "averaging": 7,
    "detection": 7,
    "monitor": 7,
    "run": 8,
    "integrations": 8,
    "report": 9,
    "search": 10,
    "sanity": 10,
    "ensemble": 11,
    "testing": 12,
    "_demo": 12,
    "cli": 13,
    "__main__": 14,
    "tunekit": 14,  # the package's own __init__: lazy public names from every layer
}

#: Private attributes of other libraries read on purpose, each with why no public name serves.
ALLOWED_PRIVATE_ATTRIBUTES = {
    # torch's multi-tensor kernels have no public alias; torch's own clip_grad_norm_ and
    # optimizers call them, and one fused call per step is what keeps diagnostics cheap.
    "_foreach_norm",
    "_foreach_sub_",
    "_foreach_neg_",
    "_foreach_lerp_",
    "_foreach_copy_",
    "_foreach_mul_",
    "_foreach_add_",
    # argparse documents add_subparsers() but exposes the type it returns only by this name.
    "_SubParsersAction",
    # A module keeps its hooks in these; torch has no call that drops others' hooks from a
    # copy, and an averaged copy must not run a monitor's hooks (averaging/_bn.bare_copy).
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(module: str) -> str:
    """The layer a module belongs to: its top-level package, except that each concept's
    command module (``tunekit.<concept>.cli``) belongs to the command layer, ``cli``."""
    parts = module.split(".")
    if len(parts) == 3 and parts[2] == "cli":
        return "cli"
    return parts[1] if len(parts) > 1 else "tunekit"


def _imports(path: Path, *, typing_only: bool = True) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every import in the file, at any depth;
    without ``typing_only``, those under ``if TYPE_CHECKING:`` are left out (they run never)."""
    module = _module_name(path)
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    if not typing_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
                skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                target = ".".join(parent + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found += [(target, a.name, node.lineno) for a in node.names]
    return found


def _target_module(target: str, name: str | None, known: set[str]) -> str:
    """``from tunekit.x import y`` imports the module ``tunekit.x.y`` when there is one."""
    if name is not None and f"{target}.{name}" in known:
        return f"{target}.{name}"
    return target


def _private(parts: list[str]) -> bool:
    return any(p.startswith("_") and not p.startswith("__") for p in parts)


FILES = sorted(ROOT.rglob("*.py"))
MODULES = {_module_name(p) for p in FILES}


def test_every_top_level_module_has_a_layer() -> None:
    packages = {_package(m) for m in MODULES}
    assert packages - set(LAYERS) == set(), "add new packages to LAYERS and docs/architecture.md"
    assert set(LAYERS) - packages == set(), "LAYERS names a package that does not exist"


def test_packages_import_only_lower_layers() -> None:
    wrong = []
    for path in FILES:
        module = _module_name(path)
        own = _package(module)
        for target, name, line in _imports(path):
            if not target.startswith("tunekit"):
                continue
            other = _package(_target_module(target, name, MODULES))
            if target == "tunekit" and name is not None:
                other = name if name in LAYERS else "tunekit"
            if other != own and LAYERS[other] >= LAYERS[own]:
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line}: {own} imports {other}")
    assert wrong == [], "\n".join(wrong)


def test_no_import_circles_between_modules() -> None:
    """Type-only imports are left out: a hook names its trainer's type and the trainer its
    hooks', which is no circle at run time."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in FILES:
        module = _module_name(path)
        for target, name, _ in _imports(path, typing_only=False):
            if target.startswith("tunekit"):
                dep = _target_module(target, name, MODULES)
                while dep not in MODULES and "." in dep:
                    dep = dep.rsplit(".", 1)[0]
                # A package's own __init__ importing its modules is how a package exports.
                if dep != module and not module.startswith(dep + "."):
                    graph[module].add(dep)
    cycles = _cycles(graph)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_private_imports_across_packages_or_from_libraries() -> None:
    wrong = []
    for path in FILES:
        module = _module_name(path)
        for target, name, line in _imports(path):
            top = target.split(".")[0]
            names = [name] if name else []
            where = f"{path.relative_to(ROOT.parent)}:{line}: {target} {name or ''}".rstrip()
            if top == "tunekit":
                real = _target_module(target, name, MODULES)
                if real.split(".")[:2] == module.split(".")[:2]:
                    continue  # a package's own private modules are its business
                inner = real.split(".")[2:] + ([] if real.endswith(f".{name}") else names)
                if _private(inner):
                    wrong.append(where)
            elif top in ("torch", "torchvision", "optuna") and _private(
                target.split(".")[1:] + names
            ):
                wrong.append(where)
    assert wrong == [], "\n".join(wrong)


def test_no_private_attributes_of_other_objects() -> None:
    """``x._name`` only on ``self``/``cls`` (or the names in ALLOWED_PRIVATE_ATTRIBUTES)."""
    wrong = []
    for path in FILES:
        own_names = _module_level_names(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Attribute) or not _private([node.attr]):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", *own_names):
                continue
            if node.attr in ALLOWED_PRIVATE_ATTRIBUTES:
                continue
            wrong.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: .{node.attr}")
    assert wrong == [], "\n".join(wrong)


def _module_level_names(path: Path) -> set[str]:
    """Classes defined in the module: ``Cls._x`` on one's own class is one's own business."""
    tree = ast.parse(path.read_text(), str(path))
    return {n.name for n in tree.body if isinstance(n, ast.ClassDef)}


@pytest.mark.parametrize("doc", ["docs/architecture.md"])
def test_the_architecture_page_names_every_package(doc: str) -> None:
    text = (ROOT.parent / doc).read_text()
    missing = [p for p in LAYERS if p not in ("tunekit", "__main__") and f"`{p}" not in text]
    assert missing == [], f"{doc} does not mention {missing}"
