"""The package's layers hold, from the code's own imports (docs/ARCHITECTURE.md, "Layers"):
every import of a ttgen module, at the top of a file or inside a function, goes to the same
layer or one below, and no two folders import each other (directly or round a longer cycle)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ttgen"

# Bottom (0) to top. A unit is a top-level module or folder of the ttgen package.
LAYERS: list[set[str]] = [
    {"__init__", "__main__", "errors", "fileio", "settings", "task", "llm", "textsim", "formats",
     "check"},  # the ground floor: contracts and small helpers
    {"sandbox"},
    {"agents"},
    {"rollout", "smoke"},
    {"sources"},
    {"curate"},
    {"export", "report", "train"},
    {"pipeline"},
    {"cli"},
    {"testing"},  # helpers for tests and benchmarks: nothing in the package imports them
]  # fmt: skip
RANK = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_of(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, set[tuple[str, int]]]:
    """module → {(imported ttgen module, line)} for every ttgen import anywhere in the file."""
    found: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        module = _module_of(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against the package
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                if target == "ttgen" or target.startswith("ttgen."):
                    if target == "ttgen":  # from ttgen import x: x may be a subpackage
                        for alias in node.names:
                            sub = f"ttgen.{alias.name}"
                            is_unit = (SRC / alias.name).is_dir() or (SRC / f"{alias.name}.py").is_file()
                            found[module].add((sub if is_unit else "ttgen", node.lineno))
                    else:
                        found[module].add((target, node.lineno))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("ttgen."):
                        found[module].add((alias.name, node.lineno))
    return found


def test_every_unit_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}  # fmt: skip
    assert units - set(RANK) == set(), "add new modules/folders to LAYERS (and ARCHITECTURE.md)"


def test_no_import_runs_up_the_layers():
    upward = []
    for module, targets in sorted(_imports().items()):
        for target, line in sorted(targets):
            a, b = _unit(module), _unit(target)
            if a != b and RANK[b] > RANK[a]:
                upward.append(f"{module}:{line} imports {target} ({b} is above {a})")
    assert upward == []


def test_no_cycles_between_folders():
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in _imports().items():
        for target, _ in targets:
            a, b = _unit(module), _unit(target)
            if a != b:
                graph[a].add(b)
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == path[0]:
                cycles.append(" -> ".join([*path, nxt]))
            elif nxt not in path and nxt > path[0]:  # report each cycle once
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert cycles == []


def test_the_layer_check_sees_a_violation(tmp_path, monkeypatch):
    """The checks can fail: a module of the ground floor importing the CLI is caught."""
    fake = tmp_path / "ttgen"
    (fake / "cli").mkdir(parents=True)
    (fake / "cli" / "__init__.py").write_text("")
    (fake / "task.py").write_text("def f():\n    from ttgen.cli import app\n")
    monkeypatch.setattr(__import__(__name__), "SRC", fake)
    found = _imports()
    assert ("ttgen.cli", 2) in found["ttgen.task"]
    assert RANK[_unit("ttgen.cli")] > RANK[_unit("ttgen.task")]
