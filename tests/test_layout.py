"""The package layout: no import cycle among lqs_core modules (imports inside functions counted), no module-level
import placed after code, and the light modules import neither TensorFlow nor Keras."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "lqs_core")


def _modules():
    """``{module name: path}`` of every lqs_core module."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


MODULES = _modules()


def _resolve(node, current: str):
    """lqs_core modules an import statement brings in."""
    out = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "lqs_core":
                out.append(alias.name)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative import
            parts = current.split(".")
            is_package = MODULES[current].endswith("__init__.py")
            parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
            base = ".".join(parts + ([base] if base else []))
        if base.split(".")[0] != "lqs_core":
            return out
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            out.append(sub if sub in MODULES else base)
    return [m for m in out if m in MODULES]


def _graph():
    graph = {}
    for module, path in MODULES.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(d for d in _resolve(node, module) if d != module)
        # a package's own __init__ is imported before any of its modules: not an edge
        graph[module] = {d for d in deps if not module.startswith(d + ".")}
    return graph


def test_no_import_cycle_among_lqs_core_modules():
    graph = _graph()
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "active"
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "active":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


#: Modules that must not load TensorFlow when imported (the Snakefile imports them at parse time): they may import
#: the heavy lqs_core modules inside the function that needs them. Every other import of an lqs_core module sits at
#: the top of its module, where a cycle would show.
LAZY_OK = ("lqs_core.workflow", "lqs_core.report")


def test_no_lqs_core_import_inside_functions():
    offenders = []
    for module, path in MODULES.items():
        if module.startswith(LAZY_OK):
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(func):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and _resolve(node, module):
                        offenders.append(f"{module}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_level_imports_come_first(module):
    with open(MODULES[module], encoding="utf-8") as f:
        body = ast.parse(f.read()).body
    seen_code = None
    for i, node in enumerate(body):
        is_docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            assert seen_code is None, f"{module}:{node.lineno}: import after code (line {seen_code})"
        elif not is_docstring:
            seen_code = seen_code or node.lineno


@pytest.mark.parametrize("module", ["lqs_core.spec", "lqs_core.provenance", "lqs_core.granularity", "lqs_core.atomic"])
def test_light_modules_import_no_tensorflow(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
