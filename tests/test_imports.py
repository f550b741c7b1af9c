"""rtlink's import graph, read from the source (``ast``, nothing is imported): no
import cycles, and the pure modules import neither asyncio nor aiohttp.

The graph has an edge from each module to every rtlink module it imports at module
level (also inside a module-level ``if``/``try``; not inside functions, which import
lazily on purpose), relative imports resolved. ``from .backends.base import Backend``
is an edge to ``rtlink.backends.base`` only: the package ``__init__`` files Python runs
on the way are not counted (``rtlink/__init__.py`` imports the whole public API, so
counting it would make every module depend on every other).

Imports under ``if TYPE_CHECKING:`` run only for the type checker: a cycle through one
fails nothing at runtime but still knots two modules together, so those cycles are
listed (:data:`KNOWN_TYPE_ONLY_CYCLES`) and any new one fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import rtlink

ROOT = Path(rtlink.__file__).parent

#: Modules that must stay sans-I/O (docs: DESIGN "Layers"): tested with plain calls.
PURE = ["protocol", "positions", "names", "session", "codecs", "codes", "limits", "origins",
        "backoff", "auth", "client.core", "client.negotiation", "client.outbox",
        "client.events"]
#: What the pure modules may not import, directly or through other rtlink modules.
IMPURE = {"asyncio", "aiohttp"}

#: Cycles that exist only through ``if TYPE_CHECKING:`` imports, known and not yet
#: removed. Each is the exact set of modules of one cycle; a new cycle, or another
#: module joining one of these, fails the test.
KNOWN_TYPE_ONLY_CYCLES: set[frozenset[str]] = set()


def module_names() -> dict[str, Path]:
    """Every rtlink module by dotted name (a package by its ``__init__.py``)."""
    modules: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_names()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _module_level_imports(body: Iterable[ast.stmt], type_checking: bool = False,
                          ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Each import statement run at module level, and whether only for type checkers."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_checking
        elif isinstance(node, ast.If):
            yield from _module_level_imports(node.body,
                                             type_checking or _is_type_checking(node))
            yield from _module_level_imports(node.orelse, type_checking)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(handler.body for handler in node.handlers)):
                yield from _module_level_imports(block, type_checking)


def imports_of(name: str) -> tuple[set[str], set[str], set[str]]:
    """The rtlink modules ``name`` imports at runtime, those it imports only under
    ``TYPE_CHECKING``, and the top-level names of the other packages it imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    runtime: set[str] = set()
    typing_only: set[str] = set()
    external: set[str] = set()
    for node, type_checking in _module_level_imports(ast.parse(path.read_text()).body):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif node.level:
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
            base += [node.module] if node.module else []
            module = ".".join(base)
            # ``from . import x``: x is a submodule, or a name defined in the package.
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES
                       else module for alias in node.names]
        else:
            assert node.module is not None
            targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}"
                       in MODULES else node.module for alias in node.names]
        for target in targets:
            if target in MODULES:
                if target != name:
                    (typing_only if type_checking else runtime).add(target)
            elif not target.startswith("rtlink.") and target != "rtlink":
                external.add(target.partition(".")[0])
            else:
                raise AssertionError(f"{name} imports {target}, which is no rtlink module")
    return runtime, typing_only - runtime, external


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles(edges: dict[str, set[str]]) -> set[frozenset[str]]:
    """The import cycles of a graph: its strongly connected components of more than
    one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(edges[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = {stack.pop()}
            while module not in component:
                component.add(stack.pop())
            if len(component) > 1:
                found.add(frozenset(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def describe(found: Iterable[frozenset[str]]) -> str:
    return "; ".join(" <-> ".join(sorted(cycle)) for cycle in sorted(found, key=sorted))


def test_the_graph_is_read_from_every_module() -> None:
    assert {"rtlink", "rtlink.hub", "rtlink.transports.websocket",
            "rtlink.backends.redis.backend"} <= set(MODULES)
    runtime, typing_only, external = GRAPH["rtlink.transports.websocket"]
    assert {"rtlink.hub", "rtlink.transports.http", "rtlink.aiohttp_internals"} <= runtime
    assert "aiohttp" in external
    # A TYPE_CHECKING import is read as such.
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\nimport y\n"
    assert [(type(node).__name__, typing_only) for node, typing_only
            in _module_level_imports(ast.parse(source).body)] == [
        ("ImportFrom", False), ("Import", True), ("Import", False)]
    # The connection knows its owner only by the interface it declares.
    assert GRAPH["rtlink.connection"][0] | GRAPH["rtlink.connection"][1] <= {
        "rtlink.codecs", "rtlink.codes", "rtlink.protocol", "rtlink.session"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {
        frozenset("abc")}


def test_no_import_cycles() -> None:
    found = cycles({name: runtime for name, (runtime, _, _) in GRAPH.items()})
    assert not found, f"import cycles: {describe(found)}"


def test_no_new_import_cycles_through_type_checking_imports() -> None:
    found = cycles({name: runtime | typing_only
                    for name, (runtime, typing_only, _) in GRAPH.items()})
    new = found - KNOWN_TYPE_ONLY_CYCLES
    assert not new, f"new import cycles (through TYPE_CHECKING imports): {describe(new)}"
    gone = KNOWN_TYPE_ONLY_CYCLES - found
    assert not gone, f"these cycles are gone: remove them from KNOWN_TYPE_ONLY_CYCLES: " \
                     f"{describe(gone)}"


@pytest.mark.parametrize("pure", PURE)
def test_the_pure_modules_import_neither_asyncio_nor_aiohttp(pure: str) -> None:
    """Through every rtlink module they import too (type-only imports included)."""
    seen: dict[str, str] = {}  # module -> the module that imported it, for the message
    todo = [f"rtlink.{pure}"]
    while todo:
        module = todo.pop()
        runtime, typing_only, external = GRAPH[module]
        bad = external & IMPURE
        if bad:
            chain = [module]
            while chain[-1] in seen:
                chain.append(seen[chain[-1]])
            raise AssertionError(f"rtlink.{pure} must stay pure, but imports "
                                 f"{', '.join(sorted(bad))} through "
                                 f"{' <- '.join(chain)}")
        for target in sorted(runtime | typing_only):
            if target not in seen and target != f"rtlink.{pure}":
                seen[target] = module
                todo.append(target)
