"""The import graph of `kzoo`, read from the source with `ast` (nothing is imported).

Pins two rules of STYLE.md 18: imports between kzoo's top-level packages flow one
way (no circle), and no module imports another package's `_private` name. Every
import counts: module level, inside functions, and names reached through an
imported module (`module._helper`).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "kzoo"


def _module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    """{module name: (path, is_package)} of every module under kzoo/."""
    return {_module_name(path): (path, path.name == "__init__.py") for path in sorted(ROOT.rglob("*.py"))}


def _package(module):
    """The top-level package of a kzoo module: kzoo.models.gpt.tasks -> kzoo.models, kzoo.saving -> kzoo.saving."""
    return ".".join(module.split(".")[:2])


def _resolve(node, module, is_package):
    """The absolute module of an `ImportFrom` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module, path, is_package, modules):
    """[(imported kzoo module, private name or None, line)] of one module.

    `from kzoo.a import b` imports module `kzoo.a.b` when that is a module, else the name `b` of `kzoo.a`.
    """
    found, aliases = [], {}
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "kzoo":
                    found.append((alias.name, None, node.lineno))
                    if alias.asname:
                        aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node, module, is_package)
            if source.split(".")[0] != "kzoo":
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if target in modules:
                    found.append((target, None, node.lineno))
                    aliases[alias.asname or alias.name] = target
                else:
                    found.append((source, alias.name, node.lineno))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            found.append((aliases[node.value.id], node.attr, node.lineno))
    return found


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@pytest.fixture(scope="module")
def graph():
    """[(importing module, imported module, imported name or None, line)] over all of kzoo."""
    modules = _modules()
    return [
        (module, target, name, line)
        for module, (path, is_package) in modules.items()
        for target, name, line in _imports(module, path, is_package, modules)
    ]


def _cycles(edges):
    """The strongly connected components of more than one node (Tarjan), each a sorted list."""
    nodes = sorted({node for edge in edges for node in edge})
    successors = {node: sorted({b for a, b in edges if a == node}) for node in nodes}
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in successors[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return sorted(components)


def _package_edges(graph):
    return {
        (_package(module), _package(target))
        for module, target, _, _ in graph
        if _package(module) != _package(target) and "kzoo" not in (_package(module), _package(target))
    }


def test_cycle_finder_finds_circles():
    assert _cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("e", "d")}) == [
        ["a", "b", "c"], ["d", "e"]]
    assert _cycles({("a", "b"), ("b", "c")}) == []


def test_train_knows_no_data_text_or_recipes(graph):
    """kzoo.train (loop, optimizer, checkpoints, strategy, config) is driven by the recipes, never the reverse, and
    works on any model and any dataset: it imports neither kzoo.data nor kzoo.text."""
    offenders = [
        f"{module}:{line} imports {target}"
        for module, target, _, line in graph
        if _package(module) == "kzoo.train" and _package(target) in ("kzoo.data", "kzoo.text", "kzoo.recipes")
    ]
    assert not offenders, offenders


def test_generate_imports_no_model_code(graph):
    """kzoo.generate is a decoding library: the models supply their decoding adapters and call it, never the reverse."""
    offenders = [
        f"{module}:{line} imports {target}"
        for module, target, _, line in graph
        if _package(module) == "kzoo.generate" and _package(target) == "kzoo.models"
    ]
    assert not offenders, offenders


def test_models_and_generate_are_in_no_circle(graph):
    """kzoo.models imports kzoo.generate (a task's `generate()` calls it); no path leads back, through any package."""
    edges = _package_edges(graph)
    for cycle in _cycles(edges):
        assert not {"kzoo.models", "kzoo.generate"} <= set(cycle), (
            f"import circle between {cycle}; edges: {sorted(edge for edge in edges if set(edge) <= set(cycle))}"
        )


def test_packages_import_each_other_in_one_direction(graph):
    edges = _package_edges(graph)
    circles = [
        f"{cycle}; edges: {sorted(edge for edge in edges if set(edge) <= set(cycle))}" for cycle in _cycles(edges)
    ]
    assert not circles, "import circles between packages:\n" + "\n".join(circles)


def test_no_module_imports_another_modules_private_name(graph):
    """A `_private` function or class stays in its module (one used elsewhere becomes a public name there); a
    `_private` module (`kzoo.layers._checks`) is shared inside its own package only."""
    offenders = []
    for module, target, name, line in graph:
        private_module = _package(module) != _package(target) and any(_private(part) for part in target.split("."))
        private_name = name is not None and _private(name) and target != module
        if private_module or private_name:
            offenders.append(f"{module}:{line} -> {target}" + (f".{name}" if name else ""))
    assert not offenders, "\n".join(offenders)


def test_finder_sees_function_level_and_private_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        "import kzoo.data.readers as readers\n"
        "from kzoo.text import _helpers\n"
        "def f():\n"
        "    from ..models.backbone import _hidden, Task\n"
        "    return readers._lines\n"
    )
    modules = {"kzoo.text._helpers": None, "kzoo.data.readers": None}
    assert sorted(_imports("kzoo.export.m", path, False, modules), key=str) == [
        ("kzoo.data.readers", "_lines", 5), ("kzoo.data.readers", None, 1), ("kzoo.models.backbone", "Task", 4),
        ("kzoo.models.backbone", "_hidden", 4), ("kzoo.text._helpers", None, 2),
    ]
