"""The package layout is the architecture: every import runs one way, down the layers below, and there is
no import circle between any two modules (imports inside functions and under TYPE_CHECKING count too).

Read statically with `ast`, so nothing is imported to check it. A new module belongs to a layer by its
prefix; a module no layer names fails the test, so the picture cannot drift from the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mdd_bench"

# Lowest first. A module may import its own layer's modules and any lower layer's, never a higher one's.
LAYERS: list[tuple[str, ...]] = [
    (
        "mdd_bench",
        "mdd_bench.errors",
        "mdd_bench.cache",
        "mdd_bench.locks",
        "mdd_bench.cluster",
        "mdd_bench.digests",
    ),
    ("mdd_bench.protocol",),
    ("mdd_bench.models",),
    ("mdd_bench.data",),
    ("mdd_bench.distilled", "mdd_bench.record"),
    ("mdd_bench.pretrained",),
    ("mdd_bench.workspace",),
    ("mdd_bench.evaluation",),
    ("mdd_bench.artifacts",),
    ("mdd_bench.api", "mdd_bench.registry", "mdd_bench.search_space", "mdd_bench.tuned"),
    ("mdd_bench.distill",),
    ("mdd_bench.methods",),
    ("mdd_bench.run", "mdd_bench.tuning", "mdd_bench.interop", "mdd_bench.report"),
    ("mdd_bench.cli",),
]
# Packages of one layer that stand side by side: none of them imports another.
SIDE_BY_SIDE = {"mdd_bench.run", "mdd_bench.tuning", "mdd_bench.interop", "mdd_bench.report"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in the file (`from a import b` counts as `a.b` when
    `a.b` is a module, else as `a`)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "mdd_bench"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mdd_bench":
            assert node.level == 0, f"{path}: relative import (the project uses absolute imports)"
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
    return {m for m in out if m in known}


def layer_of(module: str) -> int:
    best = max(
        ((len(prefix), i) for i, layer in enumerate(LAYERS) for prefix in layer
         if module == prefix or module.startswith(prefix + ".")),
        default=None,
    )  # fmt: skip
    assert best is not None, f"{module} is in no layer of tests/test_layout.py: add it where it belongs"
    return best[1]


def top_package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def graph() -> dict[str, set[str]]:
    found = modules()
    return {m: imports_of(p, set(found)) - {m} for m, p in found.items()}


def test_every_import_runs_down_the_layers() -> None:
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            if layer_of(target) > layer_of(module):
                wrong.append(f"{module} -> {target}")
            elif top_package(module) in SIDE_BY_SIDE and top_package(target) in SIDE_BY_SIDE - {
                top_package(module)
            }:
                wrong.append(f"{module} -> {target} (side by side)")
    assert not wrong, "imports that run up the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_circle_between_modules() -> None:
    edges = graph()
    # Package faces (`__init__`) that only re-export their own modules would show as circles with them;
    # a face importing its own children is not a circle of the code.
    edges = {m: {t for t in ts if not (t.startswith(m + ".") or m.startswith(t + ".") and _is_face(t))}
             for m, ts in edges.items()}  # fmt: skip
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(circles)


def _is_face(module: str) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file()


def test_the_layer_list_names_every_top_level_package_and_module() -> None:
    named = {prefix for layer in LAYERS for prefix in layer}
    tops = {top_package(m) for m in modules()} | {"mdd_bench"}
    assert tops == named, f"in the code but not in LAYERS: {tops - named}; in LAYERS only: {named - tops}"
