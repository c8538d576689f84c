"""YAML reading with limits: recipes and study files come from users, not from trusted code.

PyYAML's safe loader builds no objects but plain ones; it still follows
nesting as deep as the file goes (a few thousand brackets exhaust Python's
recursion limit), expands aliases by reference (nine lines of anchors describe
hundreds of millions of values, which anything that walks them, from a
validator to ``yaml.safe_dump``, then visits one by one) and lets a later key
silently replace an earlier one. Here the document is composed into nodes
first, with a limit on depth and on the number of nodes, and the node graph
is walked with a budget (depth, values with every alias expanded, duplicate
keys) before any Python object is constructed.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tunekit.errors import ConfigError

#: The largest file read, in bytes. A recipe or study file is a few KiB.
MAX_FILE_BYTES = 1024 * 1024
#: The deepest nesting of sections and lists (a recipe nests 4 levels, a study 5).
MAX_DEPTH = 64
#: The most values (keys, scalars, lists and mappings), counted with every alias expanded.
MAX_NODES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(Exception):
    """A limit of this module, with the field and line it was hit at."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class _LimitedLoader(yaml.SafeLoader):
    """A safe loader that stops composing at ``MAX_DEPTH`` nesting and ``MAX_NODES`` nodes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._composed = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise _Refused(
                f"nesting deeper than {MAX_DEPTH} levels at line {mark.line + 1}; "
                "a recipe or study nests a few levels (section, field, list)"
            )
        self._composed += 1
        if self._composed > MAX_NODES:
            mark = self.peek_event().start_mark
            raise _Refused(
                f"more than {MAX_NODES} values (reached at line {mark.line + 1}); "
                "a recipe or study holds a few hundred"
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# YAML 1.2's booleans: true and false only. YAML 1.1 (PyYAML's default) also reads on/off/yes/no
# as booleans, which turns `amp: off` or `--set train.channels_last=on` into a bool that the
# field's choices do not hold; pydantic's bool fields still take those words as text.
_LimitedLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LimitedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


class _Walk:
    """Checks a composed node graph: depth and size with aliases expanded, cycles, duplicate keys.

    Each node is visited once (aliases share nodes), so the check costs the
    size of the file, not of its expansion.
    """

    def __init__(self, loader: _LimitedLoader) -> None:
        self.loader = loader
        # id(node) -> (values under it with aliases expanded, its height)
        self.done: dict[int, tuple[int, int]] = {}
        self.open: set[int] = set()

    def visit(self, node: Node, path: list[str], depth: int) -> tuple[int, int]:
        key = id(node)
        if key in self.open:
            raise _Refused(
                f"an alias at or below line {node.start_mark.line + 1} refers to a section "
                "that contains it (a cycle); copy the values instead",
                _dotted(path),
            )
        if key not in self.done:
            self.open.add(key)
            self.done[key] = self._measure(node, path, depth)
            self.open.discard(key)
        size, height = self.done[key]
        if depth + height >= MAX_DEPTH:
            raise _Refused(
                f"nesting deeper than {MAX_DEPTH} levels once aliases are expanded "
                f"(at line {node.start_mark.line + 1})",
                _dotted(path),
            )
        return size, height

    def _measure(self, node: Node, path: list[str], depth: int) -> tuple[int, int]:
        children: list[tuple[Node, list[str]]] = []
        if isinstance(node, SequenceNode):
            children = [(item, [*path, str(i)]) for i, item in enumerate(node.value)]
        elif isinstance(node, MappingNode):
            self._check_keys(node, path)
            for k, v in node.value:
                name = str(k.value) if isinstance(k, ScalarNode) else "?"
                sub = path if k.tag == _MERGE_TAG else [*path, name]
                children += [(k, sub), (v, sub)]
        size, height = 1, 0
        for child, sub in children:
            s, h = self.visit(child, sub, depth + 1)
            size += s
            height = max(height, h + 1)
            if size > MAX_NODES:
                raise _Refused(
                    f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?); "
                    "a recipe or study holds a few hundred",
                    _dotted(path),
                )
        return size, height

    def _check_keys(self, node: MappingNode, path: list[str]) -> None:
        seen: dict[Any, Node] = {}
        for k, _ in node.value:
            if k.tag == _MERGE_TAG:
                continue  # `<<: *base` merges keys that the mapping's own keys may override
            if not isinstance(k, ScalarNode):
                raise _Refused(
                    f"a key at line {k.start_mark.line + 1} is a list or a mapping; "
                    "keys are plain names",
                    _dotted(path),
                )
            value = self.loader.construct_object(k)
            try:
                first = seen.get(value)
            except TypeError:  # an unhashable key; construction reports it
                continue
            if first is not None:
                a, b = first.start_mark, k.start_mark
                where = (
                    f"lines {a.line + 1} and {b.line + 1}"
                    if a.line != b.line
                    else f"line {a.line + 1}, columns {a.column + 1} and {b.column + 1}"
                )
                raise _Refused(
                    f"the key {str(k.value)!r} appears twice ({where}); YAML would keep only the "
                    "last one silently, so remove or rename one",
                    _dotted([*path, str(k.value)]),
                )
            seen[value] = k


def _dotted(path: list[str]) -> str | None:
    return ".".join(path) or None


def _load(text: str) -> Any:
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _Walk(loader).visit(node, [], 0)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml(text: str, *, file: str | None = None) -> Any:
    """Parses one YAML document within the limits above; ``None`` for an empty one.

    Every failure is a one-line :class:`ConfigError` naming ``file`` and, where
    it has one, the field.

    Example:
        >>> load_yaml("optim: {lr: 0.1}")
        {'optim': {'lr': 0.1}}
    """
    try:
        return _load(text)
    except _Refused as exc:
        raise ConfigError(exc.message, file=file, field=exc.field) from None
    except yaml.reader.ReaderError as exc:
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise ConfigError(
            f"not a YAML text file: the character #x{ord(char):04x} at position {exc.position} "
            "is not allowed in YAML",
            file=file,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(exc), file=file) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None) or ""
    if "single document" in context:
        return (
            f"a second YAML document starts{where} ('---' separates documents); "
            "a recipe or study is one document, so remove the '---' line"
        )
    if "could not determine a constructor" in problem:
        tag = problem.rsplit(" ", 1)[-1].strip("'")
        tag = tag.replace("tag:yaml.org,2002:", "!!")
        return (
            f"the tag {tag}{where} is not allowed; a recipe or study holds plain values "
            "(text, numbers, true/false, lists and mappings)"
        )
    if "'\\t'" in problem:
        problem += "; YAML indents with spaces, not tabs"
    context_mark = getattr(exc, "context_mark", None)
    if context.startswith("while ") and context_mark is not None and context_mark is not mark:
        # "expected ',' or '}'" says little without where the unclosed bracket opened
        problem += f" ({context} that starts at line {context_mark.line + 1})"
    return f"malformed YAML{where}: {problem}"


def load_value(text: str, *, field: str) -> Any:
    """One ``--set`` value: YAML within the limits above, or the text itself when it is not YAML.

    Example:
        >>> load_value("[1, 2]", field="schedule.milestones"), load_value("a: b: c", field="name")
        ([1, 2], 'a: b: c')
    """
    try:
        return _load(text)
    except _Refused as exc:
        where = f"{field}.{exc.field}" if exc.field else field
        raise ConfigError(f"in the override's value: {exc.message}", field=where) from None
    except yaml.YAMLError:
        return text
