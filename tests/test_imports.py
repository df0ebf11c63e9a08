"""The package's import graph: no cycles, and every import runs down the layers, imports inside functions too.

A cycle is where a newcomer gets lost: which module is the facade and which the
step? The folders are the layers (README, "Layout"): each imports only its own
folder and the folders below it, never one above.
"""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgecompress"

# Bottom to top. A module may import its own layer and the layers below, never one above.
LAYERS = [
    ["errors", "configs", "__init__"],
    ["lite"],
    ["devices", "data"],
    ["models"],
    ["techniques", "quantize"],
    ["report"],
    ["recipes"],
    ["builder"],
    ["search"],
    ["pipeline", "schemas"],
    ["cli", "__main__"],
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__") if rel.parts != ("__init__",) else "__init__"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (dotted, under `edgecompress.`), anywhere in its code."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module != "edgecompress" and not node.module.startswith("edgecompress."):
                    continue
                base = node.module.removeprefix("edgecompress").removeprefix(".")
                for a in node.names:  # `from edgecompress.lite import latency` imports a module
                    sub = f"{base}.{a.name}" if base else a.name
                    deps.add(sub if sub in mods else (base or "__init__"))
            elif isinstance(node, ast.Import):
                deps |= {a.name.removeprefix("edgecompress.") for a in node.names if a.name.startswith("edgecompress.")}
        # A registry that imports implementations by name ("edgecompress.techniques.prune:prune") is an edge too.
        deps |= set(re.findall(r"[\"']edgecompress\.([\w.]+):\w+[\"']", path.read_text()))
        graph[name] = {d for d in deps if d in mods} - {name}
    return graph


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS (and to the README's Layout)")


def test_every_import_runs_down_the_layers():
    graph = import_graph()
    up = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if layer_of(d) > layer_of(m))
    assert up == [], "imports that run back up a layer:\n" + "\n".join(up)


def test_the_layer_check_sees_an_import_inside_a_function(tmp_path):
    assert layer_of("lite.latency") < layer_of("models.keras_io") < layer_of("search.run")
    graph = import_graph()
    assert "lite.latency" in graph["devices.android"]  # imported inside `bench_android`
    assert "techniques.prune" in graph["recipes.registry"]  # named in a registry string


def find_cycle(graph) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_parsing_recipes_and_spaces_imports_no_tensorflow_and_no_stage_implementation():
    import subprocess
    import sys

    code = ("import sys; from edgecompress.recipes.recipe import RECIPES_DIR, load_recipe; from edgecompress.search.space import "
            "SPACES_DIR, load_space; [load_recipe(p) for p in RECIPES_DIR.glob('*.json')]; "
            "[load_space(p) for p in SPACES_DIR.glob('*.json')]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras') "
            "or m in ('edgecompress.techniques.distill', 'edgecompress.techniques.prune', 'edgecompress.techniques.factorize', 'edgecompress.models.keras_io')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_every_registered_stage_is_in_the_recipes_page():
    from edgecompress.recipes.registry import STAGES

    page = (PACKAGE.parent / "docs" / "recipes.md").read_text()
    assert [n for n in STAGES if f'"stage": "{n}"' not in page] == []


def test_every_registry_string_resolves_to_a_function():
    """Every "edgecompress.module:function" string in the package names a function that exists."""
    import importlib

    found = []
    for path in modules().values():
        found += re.findall(r"[\"'](edgecompress\.[\w.]+):(\w+)[\"']", path.read_text())
    found = [(m, f) for m, f in found if (m, f) != ("edgecompress.module", "function")]  # the error's template
    assert ("edgecompress.techniques.prune", "prune") in found
    missing = [f"{m}:{f}" for m, f in found if not callable(getattr(importlib.import_module(m), f, None))]
    assert missing == []


def private_imports(root: Path = PACKAGE) -> list[str]:
    """`from edgecompress.x import _name` where the importer is another module: a private name crossing rooms."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgecompress"):
                found += [f"{path.relative_to(root)}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_private_name_is_imported_across_modules(tmp_path):
    assert private_imports() == []
    (tmp_path / "m.py").write_text("from edgecompress.lite.reader import _hidden\n")
    assert private_imports(tmp_path) == ["m.py: edgecompress.lite.reader._hidden"]  # the check can fail
