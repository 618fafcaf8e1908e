"""The modules of `learning` import each other without a circle.

Every import counts, at module level or inside a function: a lazy import hides a circle from
Python at start-up, not from the reader who has to follow it.
"""

import ast
from pathlib import Path

PACKAGE = "learning"
ROOT = Path(__file__).resolve().parents[2]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``module`` (whose code is ``source``) imports."""

    def owner(name: str) -> str | None:  # the module a dotted name is, or lives in
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(owner(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                above = ".".join(package[: len(package) - node.level + 1])
                base = f"{above}.{base}" if base else above
            # `from learning import runs` imports the module learning.runs.
            found.update(owner(f"{base}.{alias.name}") or owner(base) for alias in node.names)
    return found - {None, module}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in (ROOT / PACKAGE).rglob("*.py")}
    return {
        module: imported_modules(
            path.read_text(), module, is_package=path.name == "__init__.py", modules=set(paths)
        )
        for module, path in paths.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Circles of imports (each with its first module repeated at the end), one per back edge.

    Every group of modules that import each other shows up in at least one of them.
    """
    cycles: list[list[str]] = []
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> None:
        if module in path:
            cycles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        path.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    return cycles


def test_it_reads_every_kind_of_import():
    source = (
        "import learning.a\n"
        "from learning import b\n"
        "from learning.c import some_function\n"
        "def f():\n"
        "    from . import d\n"
        "    from .e import thing\n"
        "    from ..f import other\n"
        "    import json\n"
    )
    modules = {"learning.a", "learning.b", "learning.c", "learning.sub.d", "learning.sub.e"}
    modules |= {"learning", "learning.f"}
    found = imported_modules(source, "learning.sub.x", is_package=False, modules=modules)
    assert found == modules - {"learning"}


def test_it_finds_every_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"b"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert find_cycles(graph) == [["b", "c", "b"], ["d", "e", "d"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_modules_of_learning_import_each_other_without_a_circle():
    graph = import_graph()
    assert "learning.runs" in graph["learning.tasks"]  # the graph is not empty
    cycles = find_cycles(graph)
    assert cycles == [], "import circles:\n" + "\n".join(" → ".join(c) for c in cycles)
