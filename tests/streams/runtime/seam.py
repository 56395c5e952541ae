"""How much of streams/ faces faust, mode and aiokafka: the measure of the seam.

Counted over the Python modules under streams/, of the working tree or of a
git ref (`python -m tests.streams.runtime.seam rooms`):

* modules importing faust, mode or aiokafka (any `import` statement);
* private attributes touched: distinct `_names` (not dunders) that faust,
  mode or aiokafka define, that our code reads, writes or overrides: an
  attribute of another object (`consumer._read_offset`), `getattr(x, "_name")`,
  or inside a class derived from theirs, a `self._name` we never assign
  ourselves or a `def _name` override;
* faust-facing lines: the non-blank, non-comment lines of the modules that
  import them or touch one of their private attributes, with the docstrings
  and (in brackets) without.

`test_seam.py` holds the seam's rule with it: only streams/runtime/ touches
their private attributes.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

UPSTREAM = ("faust", "mode", "aiokafka")
ROOT = Path(__file__).resolve().parents[3]
# A namedtuple's own API, never faust's.
NAMEDTUPLE = frozenset({"_replace", "_asdict", "_fields", "_make"})
PRIVATE = re.compile(r"^_[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Touch:
    module: str
    line: int
    name: str


@cache
def upstream_names() -> frozenset[str]:
    """Every `_name` that appears in the installed faust, mode and aiokafka."""
    names: set[str] = set()
    for package in UPSTREAM:
        for path in Path(importlib.import_module(package).__path__[0]).rglob("*.py"):
            names.update(re.findall(r"\b(_[a-z][a-z0-9_]*)\b", path.read_text(errors="replace")))
    return frozenset(names - NAMEDTUPLE)


def sources(ref: str | None = None) -> dict[str, str]:
    """path -> text of each module under streams/ (working tree, or a git ref)."""
    if ref is None:
        return {
            str(path.relative_to(ROOT)): path.read_text()
            for path in sorted((ROOT / "streams").rglob("*.py"))
        }
    names = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", ref, "streams"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return {
        name: subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{ref}:{name}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for name in names
        if name.endswith(".py")
    }


def _upstream_aliases(tree: ast.Module) -> set[str]:
    """Local names bound to faust, mode or aiokafka objects by this module's imports."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in UPSTREAM:
                    aliases.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UPSTREAM:
            aliases.update(alias.asname or alias.name for alias in node.names)
    return aliases


def imports_upstream(tree: ast.Module) -> bool:
    return bool(_upstream_aliases(tree))


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _derived_classes(trees: dict[str, ast.Module]) -> set[str]:
    """Names of our classes derived (at any remove) from a faust, mode or aiokafka class."""
    derived: set[str] = set()
    while True:
        before = len(derived)
        for tree in trees.values():
            aliases = _upstream_aliases(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and any(
                    _root_name(base) in aliases or _root_name(base) in derived
                    for base in node.bases
                ):
                    derived.add(node.name)
        if len(derived) == before:
            return derived


def _own_attributes(cls: ast.ClassDef) -> set[str]:
    """`self._name`s this class assigns itself: ours, whatever its base."""
    return {
        target.attr
        for node in ast.walk(cls)
        for target in (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign | ast.AugAssign)
            else []
        )
        if isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    }


def touches(trees: dict[str, ast.Module]) -> list[Touch]:
    """Every place our code touches a private attribute of faust, mode or aiokafka."""
    known = upstream_names()
    derived = _derived_classes(trees)
    found: list[Touch] = []

    def visit(module: str, node: ast.AST, cls: ast.ClassDef | None, own: set[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                inner = child if child.name in derived else None
                visit(module, child, inner, _own_attributes(child) if inner else set())
                continue
            name: str | None = None
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and cls is not None:
                name = child.name  # an override of theirs
            elif isinstance(child, ast.Attribute):
                if isinstance(child.value, ast.Name) and child.value.id in ("self", "cls"):
                    if cls is not None and child.attr not in own:
                        name = child.attr
                else:
                    name = child.attr
            elif (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Name)
                and child.func.id in ("getattr", "hasattr", "setattr")
                and len(child.args) >= 2
                and isinstance(child.args[1], ast.Constant)
                and isinstance(child.args[1].value, str)
            ):
                name = child.args[1].value
            if name is not None and PRIVATE.match(name) and name in known:
                found.append(Touch(module, getattr(child, "lineno", 0), name))
            visit(module, child, cls, own)

    for module, tree in trees.items():
        visit(module, tree, None, set())
    return found


def code_lines(text: str, docstrings: bool = True) -> int:
    """Non-blank lines that are not comments; with or without the docstrings."""
    skip: set[int] = set()
    if not docstrings:
        for node in ast.walk(ast.parse(text)):
            body = getattr(node, "body", None)
            if (
                isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                skip.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    return sum(
        1
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and number not in skip
    )


@dataclass(frozen=True)
class Measure:
    importing: list[str]
    facing: dict[str, int]  # module -> lines
    logic: dict[str, int]  # module -> lines without docstrings
    touched: list[Touch]

    @property
    def names(self) -> list[str]:
        return sorted({t.name for t in self.touched})


def measure(ref: str | None = None) -> Measure:
    texts = sources(ref)
    trees = {module: ast.parse(text) for module, text in texts.items()}
    found = touches(trees)
    importing = sorted(m for m, tree in trees.items() if imports_upstream(tree))
    facing = sorted(set(importing) | {t.module for t in found})
    return Measure(
        importing,
        {m: code_lines(texts[m]) for m in facing},
        {m: code_lines(texts[m], docstrings=False) for m in facing},
        found,
    )


def main(argv: list[str]) -> None:
    ref = argv[0] if argv else None
    m = measure(ref)
    print(f"seam of {ref or 'the working tree'}:")
    for module, lines in m.facing.items():
        names = sorted({t.name for t in m.touched if t.module == module})
        imports = "imports" if module in m.importing else "       "
        logic = m.logic[module]
        print(f"  {module:45} {imports} {lines:4} ({logic:3}) lines  {' '.join(names)}")
    print(f"modules importing faust/mode/aiokafka: {len(m.importing)}")
    print(
        f"faust-facing lines: {sum(m.facing.values())} "
        f"({sum(m.logic.values())} without docstrings) in {len(m.facing)} modules"
    )
    print(f"distinct private attributes touched: {len(m.names)}")
    outside = sorted({t.module for t in m.touched if not t.module.startswith("streams/runtime/")})
    print(f"modules outside streams/runtime touching them: {len(outside)} {' '.join(outside)}")


if __name__ == "__main__":
    main(sys.argv[1:])
