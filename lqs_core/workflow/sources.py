"""Which source files of ``lqs_core`` a notebook or module really runs: the code inputs of the workflow's rules.

A figure is redrawn when its notebook or the code it imports changes, and only then: :func:`notebook_sources`
reads the ``import`` statements of a notebook's code cells, :func:`module_sources` follows them through
``lqs_core`` (statically, with :mod:`ast`; nothing is imported) and returns the files. Editing the GPU locking in
:mod:`lqs_core.workflow.jobs` therefore redraws no figure, while editing :mod:`lqs_core.workflow.aggregate` redraws
those that use it.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Iterable, List, Set

#: The folder that holds the ``lqs_core`` package.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "lqs_core"


def _module_file(module: str) -> Path | None:
    """The file of an ``lqs_core`` module or package (None for anything else)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = SOURCE_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.AST, module: str, is_package: bool) -> Set[str]:
    """Every module an AST imports (absolute names; ``from x import y`` gives ``x`` and ``x.y``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def module_sources(modules: Iterable[str]) -> List[str]:
    """The files of ``modules`` and of every ``lqs_core`` module they import, transitively (parent packages'
    ``__init__.py`` included: importing a module runs them), sorted."""
    seen: Set[str] = set()
    files: Set[Path] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        if path is None:
            continue
        files.add(path)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        todo.extend(_imports(tree, module, path.name == "__init__.py"))
    return sorted(str(p) for p in files)


def notebook_modules(notebook) -> Set[str]:
    """The modules a notebook's code cells import (IPython magics and shell lines skipped)."""
    with open(notebook, encoding="utf-8") as f:
        nb = json.load(f)
    found: Set[str] = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell.get("source", []))
        code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        found |= _imports(ast.parse(code), "__main__", False)
    return found


def notebook_sources(notebook) -> List[str]:
    """The ``lqs_core`` files a notebook runs (see :func:`module_sources`)."""
    return module_sources(notebook_modules(notebook))
