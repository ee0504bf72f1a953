"""The layer table in docs/architecture.md is the law: no upward import, no cycle, no module
without a row, and no row that names nothing. Imports inside functions count, and so do
relative imports and dynamic ones (``importlib.import_module("deeporb...")``, ``__import__``,
and a dotted ``"deeporb.x.y"`` string such as a Hydra ``_target_`` built in code)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "deeporb"
ROW = re.compile(r"^\| `(deeporb/[\w/.]*)` \| (\d+) \| [^|]* \|([^|]*)\|$")


def layer_table() -> list[tuple[str, int, list[str]]]:
    """(path or package prefix, layer, forbidden import prefixes) from docs/architecture.md."""
    rows = []
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        m = ROW.match(line.strip())
        if m:
            forbidden = [f.strip() for f in m.group(3).split(",") if f.strip()]
            rows.append((m.group(1), int(m.group(2)), forbidden))
    return rows


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def row_of(path: Path, table) -> tuple[str, int, list[str]] | None:
    rel = path.relative_to(ROOT).as_posix()
    matches = [r for r in table if rel == r[0] or (r[0].endswith("/") and rel.startswith(r[0]))]
    return max(matches, key=lambda r: len(r[0])) if matches else None


DYNAMIC = {"import_module", "__import__"}
DOTTED = re.compile(r"^deeporb(\.\w+)+$")


def _package_of(path: Path) -> list[str]:
    """The package a file's relative imports start from (``from . import x``)."""
    name = module_name(path) if path.is_relative_to(ROOT) else path.stem
    return name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]


def imports_of(path: Path, text: str | None = None) -> set[str]:
    """Every module a file imports, anywhere in it (``from a import b`` counts as a.b when a.b is a
    module): plain, relative (resolved against the file's package) and dynamic imports."""
    names = set()
    tree = ast.parse(path.read_text() if text is None else text)
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path)[: len(_package_of(path)) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if func in DYNAMIC and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if DOTTED.match(node.value):  # a module or module.attribute named as a string
                parts = node.value.split(".")
                names.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    return names


def package_graph():
    table = layer_table()
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f): f for f in files}
    graph = {}
    for name, f in modules.items():
        deps = {d for d in imports_of(f) if d in modules and d != name}
        graph[name] = deps
    return table, modules, graph


def test_every_module_has_a_row_and_every_row_names_a_module():
    table, modules, _ = package_graph()
    missing = [str(f.relative_to(ROOT)) for f in modules.values() if row_of(f, table) is None]
    assert not missing, f"modules without a row in docs/architecture.md: {missing}"
    used = {row_of(f, table)[0] for f in modules.values()}
    assert not [r[0] for r in table if r[0] not in used], "rows that name no module"


def test_no_module_imports_a_higher_layer_or_a_forbidden_one():
    table, modules, graph = package_graph()
    problems = []
    for name, deps in graph.items():
        _, layer, forbidden = row_of(modules[name], table)
        for dep in deps:
            dep_layer = row_of(modules[dep], table)[1]
            if dep_layer > layer:
                problems.append(f"{name} (layer {layer}) imports {dep} (layer {dep_layer})")
        for imported in imports_of(modules[name]):
            if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                problems.append(f"{name} imports {imported}, which its row forbids")
    assert not problems, "\n".join(problems)


def test_the_import_graph_has_no_cycle():
    _, _, graph = package_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_sees_function_level_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from deeporb.stages import sample\n    import torch\n")
    assert {"deeporb.stages", "deeporb.stages.sample", "torch"} <= imports_of(source)


def test_the_checker_sees_relative_and_dynamic_imports():
    text = (
        "from . import loop\nfrom ..stages import sample\nimport importlib\n"
        "importlib.import_module('deeporb.serve.app')\n__import__('deeporb.render')\n"
        "TARGET = {'_target_': 'deeporb.stages.encode.encode_session'}\n"
    )
    # as if it were deeporb/generation/masks.py: its relative imports resolve from there
    found = imports_of(ROOT / "deeporb" / "generation" / "masks.py", text)
    assert {"deeporb.generation.loop", "deeporb.stages.sample", "deeporb.serve.app", "deeporb.render",
            "deeporb.stages.encode"} <= found
