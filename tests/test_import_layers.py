"""The product's imports point one way, and no modules import each other in a circle.

The layers, lowest first (docs/design.md, "Layout"); a module may import its own layer and
those below it, never one above:

1. ``chatbot_site.env``: reading the environment.
2. ``admin_parts``: admin pieces with no model of their own (charts, filters, inlines).
3. ``knowledge``: articles, retrieval and the answering layer; torch-free.
4. the model registry, ``learning.models``, ``learning.versions`` and ``learning.signals``:
   which version answers is a fact of the database, changed by ``learning.versions`` and
   announced by signals that serving receives, so the registry imports no serving code. Its
   tables stay in ``learning`` so that no data migration was needed.
5. ``serving``: which model answers and how.
6. ``conversations``: the chat, handoff and satisfaction.
7. ``learning``: feedback → examples → update → gate → registry.
8. ``chatbot_site``: settings, routing, ASGI and Celery, which put the apps together.

Every import counts, at module level or inside a function: a lazy import hides a direction
from Python at start-up, not from the reader who has to follow it. Tests and benchmarks are
outside the product and may import anything.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("chatbot_site", "admin_parts", "knowledge", "serving", "conversations", "learning")
LAYERS = (
    ("chatbot_site.env",),
    ("admin_parts",),
    ("knowledge",),
    ("learning.models", "learning.versions", "learning.signals", "learning.migrations"),
    ("serving",),
    ("conversations",),
    ("learning",),
    ("chatbot_site",),
)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
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


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    paths = {
        module_name(path, root): path
        for package in packages
        for path in (root / package).rglob("*.py")
    }
    return {
        module: imported_modules(
            path.read_text(), module, is_package=path.name == "__init__.py", modules=set(paths)
        )
        for module, path in paths.items()
    }


def layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int:
    """The layer of the longest prefix that names ``module`` or a package above it."""
    best, best_length = -1, -1
    for index, prefixes in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def upward_imports(
    graph: dict[str, set[str]], layers: tuple[tuple[str, ...], ...] = LAYERS
) -> list[str]:
    return [
        f"{module} (layer {layer_of(module, layers) + 1}) imports {target} "
        f"(layer {layer_of(target, layers) + 1})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target, layers) > layer_of(module, layers)
    ]


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


def test_the_longest_prefix_decides_the_layer():
    assert layer_of("learning.models") == 3
    assert layer_of("learning.signals") == 3
    assert layer_of("learning.versions") == 3
    assert layer_of("learning.models_extra") == 6  # a prefix is a whole package or module name
    assert layer_of("learning.tasks") == 6
    assert layer_of("chatbot_site.env") == 0
    assert layer_of("chatbot_site.asgi") == 7


def test_it_catches_an_import_up_the_layers_at_module_and_function_level(tmp_path):
    """A throwaway tree whose knowledge imports serving twice, once inside a function."""
    for package in ("knowledge", "serving", "conversations"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "serving" / "engine.py").write_text("from knowledge import answering\n")
    (tmp_path / "knowledge" / "answering.py").write_text(
        "import serving.engine\n\ndef later():\n    from conversations import replying\n"
    )
    (tmp_path / "conversations" / "replying.py").write_text("from serving.engine import x\n")
    graph = import_graph(tmp_path, ("knowledge", "serving", "conversations"))
    assert upward_imports(graph) == [
        "knowledge.answering (layer 3) imports conversations.replying (layer 6)",
        "knowledge.answering (layer 3) imports serving.engine (layer 5)",
    ]


def test_every_module_of_the_product_has_a_layer():
    assert all(layer_of(module) >= 0 for module in import_graph())


def test_the_product_imports_point_down_the_layers():
    graph = import_graph()
    assert "learning.runs" in graph["learning.tasks"]  # the graph is not empty
    up = upward_imports(graph)
    assert up == [], "imports up the layers:\n" + "\n".join(up)


def test_the_product_modules_import_each_other_without_a_circle():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import circles:\n" + "\n".join(" → ".join(c) for c in cycles)
