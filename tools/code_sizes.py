"""Sizes that keep the package readable: lines per module, per function and per class, and import cycles.

Prints every module over 350 lines, function over 60 and class over 150, and every pair of the
package's parts (top-level subpackages and pipeline stages) that import each other; exits 1 if any.
Run: ``python tools/code_sizes.py [PACKAGE_DIR]``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LIMITS = {"module": 350, "function": 60, "class": 150}


def _part(module: str) -> str:
    """The part a dotted module belongs to: ``atriumseg.pipeline.batch.runner`` -> ``atriumseg.pipeline.batch``."""
    names = module.split(".")
    return ".".join(names[:3] if len(names) > 2 and names[1] == "pipeline" else names[:2])


def _imports(tree: ast.AST, package: str) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] == package}


def main(root: Path) -> int:
    """Print what is over the limits and which parts import each other; the exit code says whether any."""
    problems = 0
    edges: set[tuple[str, str]] = set()
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        source = path.read_text()
        tree = ast.parse(source)
        lines = len(source.splitlines())
        if lines > LIMITS["module"]:
            print(f"module   {lines:4d} lines  {path}")
            problems += 1
        kinds = {ast.FunctionDef: "function", ast.AsyncFunctionDef: "function", ast.ClassDef: "class"}
        for node in ast.walk(tree):
            kind = kinds.get(type(node))
            if kind and node.end_lineno - node.lineno + 1 > LIMITS[kind]:
                print(f"{kind:8s} {node.end_lineno - node.lineno + 1:4d} lines  {path}:{node.lineno} {node.name}")
                problems += 1
        edges.update((_part(module), _part(m)) for m in _imports(tree, root.name) if _part(m) != _part(module))
    for a, b in sorted(edges):
        if a < b and (b, a) in edges:
            print(f"cycle    {a} <-> {b}")
            problems += 1
    print(f"{problems} over the limits (module {LIMITS['module']}, function {LIMITS['function']}, "
          f"class {LIMITS['class']} lines; no two parts importing each other)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "atriumseg"))
