"""The package's import graph has no cycles, counting imports inside functions too.

A cycle is where a newcomer gets lost: which module is the facade and which the
step? Blocks (stages, measurement, reporting) sit below the flows that
compose them and never import them back.
"""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgecompress"


def import_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {}
    for path in PACKAGE.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                parts = node.module.split(".")
                if parts[0] != "edgecompress":
                    continue
                if len(parts) > 1:
                    deps.add(parts[1])
                else:  # from edgecompress import x, y
                    deps |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names
                         if a.name.startswith("edgecompress.") and a.name.count(".") >= 1}
        # A registry that imports implementations by name ("edgecompress.pruning:prune") is an edge too.
        deps |= set(re.findall(r"[\"']edgecompress\.(\w+):\w+[\"']", path.read_text()))
        graph[path.stem] = deps - {path.stem}
    return graph


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

    code = ("import sys; from edgecompress.recipe import RECIPES_DIR, load_recipe; from edgecompress.search import "
            "SPACES_DIR, load_space; [load_recipe(p) for p in RECIPES_DIR.glob('*.json')]; "
            "[load_space(p) for p in SPACES_DIR.glob('*.json')]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras') "
            "or m in ('edgecompress.distillation', 'edgecompress.pruning', 'edgecompress.lowrank', 'edgecompress.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_every_registered_stage_is_in_the_readme():
    from edgecompress.registry import STAGES

    readme = (PACKAGE.parent / "README.md").read_text()
    assert [n for n in STAGES if f'"stage": "{n}"' not in readme] == []
