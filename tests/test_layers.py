"""Layer contracts: which module may import which, read from the source (imports inside
functions count), so the next change cannot quietly add an upward import or a circle.

* ``breachlab.vuln`` and ``breachlab.brain`` never import each other.
* Inside the training wing (``breachlab.vuln.training``) a module imports only from lower
  layers (:data:`TRAINING_LAYERS`, lowest first; the same order as the package docstring).
* Nothing below the command line imports a CLI module.
* No import circle anywhere in ``breachlab``.

The checker is checked too, on a synthetic module graph: it must catch each kind of breach.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
T = "breachlab.vuln.training."

# Lowest first.  A module may import modules of lower layers only (not of its own layer).
TRAINING_LAYERS: list[set[str]] = [
    {T + "anatomy", T + "pairloss", T + "speed", T + "speed.buckets"},
    {T + "config", T + "curves"},
    {T + "shard", T + "speed.ple", T + "speed.patches", T + "speed.regional", T + "speed.headloss"},
    {T + "ckpt", T + "sft", T + "plan"},  # the planner's memory count: vuln plan, and the budget reads it
    {T + "speed.budget", T + "objectives", T + "load", T + "plan_run"},
    {T + "speed.graphs", T + "setup"},
    {T + "step", T + "validate", T + "save"},
    {T + "loop"},
    {T + "run"},
]
CLI_MODULES = {"breachlab.cli", "breachlab.__main__", "breachlab.vuln.cli", "breachlab.brain.cli",
               "breachlab.vuln.scan.cli"}


# -- the checker ---------------------------------------------------------------------------------
def module_names(src: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_in(source: str, module: str, is_package: bool) -> set[str]:
    """Every module name ``source`` imports, at any depth (functions, classes, branches);
    ``from a import b`` yields both ``a`` and ``a.b``; relative imports are resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(modules: dict[str, str], packages: set[str] = frozenset()) -> dict[str, set[str]]:
    """Module -> the known modules it imports (``modules``: name -> source)."""
    graph = {}
    for name, source in modules.items():
        graph[name] = {t for t in imports_in(source, name, name in packages) if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]], packages: set[str] = frozenset()) -> list[list[str]]:
    """Strongly connected groups of two or more modules (a package ``__init__`` re-exporting
    its own modules is not a circle of its own)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(set(group) - packages) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def breaches(graph: dict[str, set[str]], layers: list[set[str]], cli: set[str]) -> list[str]:
    """Every import that breaks a contract, as 'importer -> imported (why)'."""
    out = []
    level = {m: i for i, layer in enumerate(layers) for m in layer}
    for src, targets in sorted(graph.items()):
        for dst in sorted(targets):
            for a, b in (("breachlab.vuln", "breachlab.brain"), ("breachlab.brain", "breachlab.vuln")):
                if (src == a or src.startswith(a + ".")) and (dst == b or dst.startswith(b + ".")):
                    out.append(f"{src} -> {dst} (vuln and brain are independent)")
            if dst in cli and src not in cli:
                out.append(f"{src} -> {dst} (only the command line imports a CLI module)")
            if src in level and dst in level and level[dst] >= level[src]:
                out.append(f"{src} -> {dst} (layer {level[src] + 1} may import only lower layers, "
                           f"not layer {level[dst] + 1})")
    return out


def _real_graph() -> tuple[dict[str, set[str]], set[str]]:
    names = module_names(SRC)
    packages = {n for n, p in names.items() if p.name == "__init__.py"}
    return import_graph({n: p.read_text(encoding="utf-8") for n, p in names.items()}, packages), packages


# -- the contracts -------------------------------------------------------------------------------
def test_every_training_module_has_a_layer():
    names = set(module_names(SRC))
    wing = {n for n in names if n.startswith(T)}
    placed = set().union(*TRAINING_LAYERS)
    assert wing - placed == set(), "a new module of the training wing needs a place in TRAINING_LAYERS"
    assert placed - names == set(), "TRAINING_LAYERS names a module that does not exist"


def test_layer_contracts_hold():
    graph, _ = _real_graph()
    assert breaches(graph, TRAINING_LAYERS, CLI_MODULES) == []


def test_no_import_circles():
    graph, packages = _real_graph()
    assert circles(graph, packages) == []


# The wings of breachlab.vuln, lowest first: a wing imports only from lower wings (the modules
# at vuln/'s root count as wings of their own).  Inside the training wing, TRAINING_LAYERS.
VULN_WINGS: list[set[str]] = [
    {"sample"}, {"cwe"}, {"prompts"},
    {"data", "backends"},
    {"kb"},
    {"eval", "training"},
    {"export", "quantbench", "scan"},
    {"quickstart"},
    {"cli"},
]


def wing_breaches(graph: dict[str, set[str]], wings: list[set[str]]) -> list[str]:
    """Imports between wings of breachlab.vuln that point up or sideways."""
    level = {w: i for i, ws in enumerate(wings) for w in ws}
    out = []
    for src, targets in sorted(graph.items()):
        a = src.split(".")
        for dst in sorted(targets):
            b = dst.split(".")
            if a[:2] != ["breachlab", "vuln"] or b[:2] != ["breachlab", "vuln"] or len(a) < 3 or len(b) < 3:
                continue
            if a[2] != b[2] and level.get(b[2], -1) >= level.get(a[2], len(wings)):
                out.append(f"{src} -> {dst} (wing {a[2]} may import only lower wings, not {b[2]})")
    return out


def test_every_vuln_module_is_in_a_wing():
    names = {n.split(".")[2] for n in module_names(SRC) if n.startswith("breachlab.vuln.")}
    assert names - set().union(*VULN_WINGS) == set(), "a new part of breachlab.vuln needs a place in VULN_WINGS"


def test_vuln_wings_import_downwards():
    graph, _ = _real_graph()
    assert wing_breaches(graph, VULN_WINGS) == []


def test_the_wing_checker_catches_an_upward_import():
    graph = import_graph({"breachlab.vuln.data.build": "from breachlab.vuln.eval import metrics\n",
                          "breachlab.vuln.eval.metrics": "from breachlab.vuln.data import build\n"})
    assert wing_breaches(graph, [{"data"}, {"eval"}]) == [
        "breachlab.vuln.data.build -> breachlab.vuln.eval.metrics (wing data may import only lower wings, not eval)"]


# -- the checker catches what it must ------------------------------------------------------------
def test_the_checker_finds_upward_cross_and_cli_imports_and_circles():
    layers = [{"breachlab.vuln.training.low"}, {"breachlab.vuln.training.high"}]
    clean = {
        "breachlab.vuln.training.low": "import math\n",
        "breachlab.vuln.training.high": "from breachlab.vuln.training import low\n",
        "breachlab.vuln.cli": "def main():\n    from breachlab.vuln.training.high import x\n",
        "breachlab.brain.encode": "import numpy\n",
    }
    graph = import_graph(clean)
    assert graph["breachlab.vuln.cli"] == {"breachlab.vuln.training.high"}, "imports inside functions count"
    assert breaches(graph, layers, {"breachlab.vuln.cli"}) == [] and circles(graph) == []

    upward = dict(clean)
    upward["breachlab.vuln.training.low"] = "def f():\n    from .high import g\n    return g\n"
    graph = import_graph(upward)
    found = breaches(graph, layers, {"breachlab.vuln.cli"})
    assert found == ["breachlab.vuln.training.low -> breachlab.vuln.training.high "
                     "(layer 1 may import only lower layers, not layer 2)"]
    assert circles(graph) == [["breachlab.vuln.training.high", "breachlab.vuln.training.low"]]

    same_layer = {"breachlab.vuln.training.a": "from breachlab.vuln.training import b\n",
                  "breachlab.vuln.training.b": ""}
    assert breaches(import_graph(same_layer), [{"breachlab.vuln.training.a", "breachlab.vuln.training.b"}], set())

    crossed = dict(clean)
    crossed["breachlab.brain.encode"] = "def f():\n    import breachlab.vuln.training.low\n"
    assert breaches(import_graph(crossed), layers, set()) == [
        "breachlab.brain.encode -> breachlab.vuln.training.low (vuln and brain are independent)"]

    cli_below = dict(clean)
    cli_below["breachlab.vuln.training.high"] += "def g():\n    from breachlab.vuln import cli\n"
    assert breaches(import_graph(cli_below), layers, {"breachlab.vuln.cli"}) == [
        "breachlab.vuln.training.high -> breachlab.vuln.cli (only the command line imports a CLI module)"]
