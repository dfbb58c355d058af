"""The packages' shape (docs/ARCHITECTURE.md, Layers): imports only go down, imports inside functions
included; no import cycle; no module over 500 lines; at most 10 modules directly under training/."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Collection, Iterable

from conftest import ROOT

PACKAGES = ("pipeline", "training", "emogan")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def import_names(nodes: Iterable[ast.AST], modules: Collection[str]) -> set[str]:
    """Project modules named by the Import/ImportFrom among `nodes` (`from X import Y` counts as X and X.Y)."""
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Project modules a file imports anywhere in it (module level, functions, `from X import Y` as X.Y)."""
    return import_names(ast.walk(ast.parse(path.read_text())), modules)


def graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {m: imports_of(p, set(mods)) - {m} for m, p in mods.items()}


def layer(module: str) -> tuple[str, int]:
    """(layer name, rank): a module may import modules of lower rank, or of its own layer."""
    parts = module.split(".")
    if parts[0] == "pipeline":
        return "pipeline", 0
    if parts[0] == "emogan":
        return "emogan", 5
    sub = parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ("models", "evaluation", "inference",
                                                                         "commands")) else ""
    return {"models": ("models", 1), "": ("core", 2), "evaluation": ("evaluation", 3),
            "inference": ("inference", 3), "commands": ("commands", 4)}[sub]


def test_imports_only_go_down_the_layers():
    bad = []
    for m, deps in graph().items():
        name, rank = layer(m)
        for d in deps:
            dname, drank = layer(d)
            if drank > rank or (drank == rank and dname != name):
                bad.append(f"{m} ({name}) imports {d} ({dname})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles():
    g = graph()
    # Tarjan's strongly connected components: any with more than one module is a cycle.
    index, low, stack, on, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    # A package's __init__ importing its own modules is not a cycle of code; there are none here anyway.
    assert not cycles, cycles


def test_module_sizes_and_the_training_top_level():
    long = {m: n for m, p in project_modules().items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"modules over 500 lines: {long}"
    top = sorted(p.name for p in (ROOT / "training").glob("*.py"))
    assert len(top) <= 10, top
