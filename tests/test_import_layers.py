"""The import layers of docs/architecture.md ("Who may import whom"), read from the source with ``ast``: no import cycle,
no module importing one from a higher layer, package ``__init__`` files importing nothing of ours eagerly, and the
robot side (layers 1, 2 and 4) free of torch, transformers and mani_skill at module level.

Every ``import`` / ``from ... import`` counts, function-level ones included (a lazy import is still a dependency);
only imports under ``if TYPE_CHECKING:`` are left out. The last test is the one runtime counterpart: what the robot
side loads, through every chain of imports, in a fresh interpreter. (The wheel installed without extras, with no
torch, drives a robot in ``.ci/run``.)
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "policies", "bridge", "envs")

# The layer of each folder (docs/architecture.md); a module takes the layer of the deepest folder that holds it.
FOLDER_LAYERS: dict[str, int] = {
    "runtime.core": 1,      # building blocks: timing, budgets, virtual time, config files, resources, provenance
    "policies.api": 2,      # what the robot imports of the policy: Observation, the Policy protocol, ensemble
    "policies": 3,          # the policy: model, front ends, acceleration, training, checkpoints
    "bridge": 4,            # the robot side of the wire: codec, protocol, limits, client, keys
    "runtime.robot": 4,     # the robot side of the loop: control loop, execution strategies, robot adapters
    "bridge.server": 5,     # the policy server and its websocket endpoints
    "envs": 5,              # simulators, tasks, the episode runner and its workers, experts
    "runtime.app": 6,       # the vlart command and what only it runs: evaluation, sweeps, reports, profile
}
ROBOT_SIDE = (1, 2, 4)
# What the robot side must install and import without (design.md): the policy and simulator stacks.
HEAVY = ("torch", "transformers", "diffusers", "safetensors", "tokenizers", "mani_skill", "sapien", "gymnasium")
# Nor does a robot program (the thin client, `vlart robot`) load the policy's image and config readers or a simulator.
NOT_IN_A_ROBOT_PROGRAM = (*HEAVY, "PIL", "yaml", "envs")


@dataclass(frozen=True)
class Import:
    """One import statement's target: ``name`` (a dotted module, ours or not), where it is, and whether it runs
    when the importing module is imported (not inside a function)."""

    source: str
    name: str
    path: Path
    line: int
    module_level: bool

    def __str__(self) -> str:
        where = "module level" if self.module_level else "inside a function"
        return f"{self.source} imports {self.name} ({self.path.relative_to(REPO)}:{self.line}, {where})"


def module_files() -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of our packages (a package is its ``__init__``)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = module_files()


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def layer(module: str) -> int:
    """The layer of the deepest folder in FOLDER_LAYERS that holds ``module``."""
    parts = module.split(".")
    for end in range(len(parts) - 1, 0, -1):
        folder = ".".join(parts[:end])
        if folder in FOLDER_LAYERS:
            return FOLDER_LAYERS[folder]
    raise KeyError(f"{module} lies in no layer's folder ({', '.join(FOLDER_LAYERS)}): move it into one")


def _type_checking_block(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports for annotations only, never executed."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """Dotted names an import statement loads: ``from a.b import c`` loads ``a.b.c`` when that is one of our
    modules, else ``a.b``; relative imports are resolved against ``module``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package(module) else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend(Import(module, name, path, child.lineno, module_level)
                             for name in _imported_names(child, module) if name != "__future__")
            inner = module_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), True)
    return found


def ours(name: str) -> str | None:
    """The module of ours that importing ``name`` loads (the longest known prefix), or None for a third party."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


IMPORTS = {module: imports_of(module) for module in MODULES}


def project_graph() -> dict[str, dict[str, Import]]:
    """``{module: {imported module of ours: the first statement importing it}}``."""
    graph: dict[str, dict[str, Import]] = {}
    for module, found in IMPORTS.items():
        edges: dict[str, Import] = {}
        for item in found:
            target = ours(item.name)
            if target is not None and target != module:
                edges.setdefault(target, item)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, Import]]) -> list[str]:
    """One import cycle as ``[a, b, ..., a]``, or [] (iterative depth-first search, white/grey/black)."""
    state: dict[str, int] = {}
    for root in sorted(graph):
        if state.get(root):
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        path, state[root] = [root], 1
        while stack:
            node, pending = stack[-1]
            if not pending:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = pending.pop(0)
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph[nxt])))
    return []


def test_every_module_lies_in_a_layer_folder():
    # a module directly under runtime/ (or a new top-level folder) would have no layer
    homeless = [m for m in MODULES if not is_package(m) and not _has_layer(m)]
    assert not homeless, f"modules in no layer's folder: {homeless}"
    assert set(FOLDER_LAYERS) <= set(MODULES), "FOLDER_LAYERS names a folder that is not a package"


def _has_layer(module: str) -> bool:
    try:
        layer(module)
    except KeyError:
        return False
    return True


def test_no_import_cycle():
    graph = project_graph()
    cycle = find_cycle(graph)
    if cycle:
        steps = "\n  ".join(str(graph[a][b]) for a, b in zip(cycle, cycle[1:]))
        pytest.fail(f"import cycle {' -> '.join(cycle)}:\n  {steps}")


def test_no_module_imports_a_higher_layer():
    bad = [
        f"{item} (layer {layer(item.source)} -> layer {layer(target)})"
        for module, edges in project_graph().items()
        for target, item in edges.items()
        if not is_package(target) and layer(target) > layer(module)
    ]
    assert not bad, "imports against design.md's layers:\n  " + "\n  ".join(bad)


def floor(package: str) -> int:
    """The lowest layer among a package's modules: importing any of them runs the package's ``__init__`` first."""
    return min(layer(m) for m in MODULES if not is_package(m) and m.startswith(f"{package}."))


def test_package_init_files_import_nothing_eagerly():
    # An __init__ runs before any module of its package is imported, so an eager import there is a dependency of
    # every module below it. Allowed: modules of the package itself no higher than its lowest layer (runtime.app.cli,
    # layer 6, registers its subcommands); runtime/, which holds layers 1, 4 and 6, must stay empty.
    bad = [
        str(item)
        for module in MODULES if is_package(module)
        for item in IMPORTS[module]
        if item.module_level and (target := ours(item.name)) is not None
        and not (target.startswith(f"{module}.") and layer(target) <= floor(module))
    ]
    assert not bad, "package __init__ files must import nothing of ours eagerly:\n  " + "\n  ".join(bad)


def test_robot_side_imports_no_policy_or_simulator_stack():
    bad = [
        str(item)
        for module in MODULES
        if not is_package(module) and layer(module) in ROBOT_SIDE
        for item in IMPORTS[module]
        if item.module_level and item.name.split(".")[0] in HEAVY
    ]
    heavy = ", ".join(HEAVY)
    assert not bad, f"robot-side modules (layers {ROBOT_SIDE}) must not import {heavy}:\n  " + "\n  ".join(bad)


ROBOT_PROBE = """
import importlib, json, sys

def loaded(names):
    found = {m for m in sys.modules if m.split('.')[0] in names}
    found |= {m for m in sys.modules if m.startswith('policies.') and m.split('.')[1] != 'api'}
    return sorted(found)

import bridge.client, runtime.robot.runner, runtime.robot.template, runtime.app.cli.robot
from runtime.app.cli import build_parser
build_parser()
program = loaded(set(sys.argv[1].split(',')))
for name in sys.argv[3].split(','):
    importlib.import_module(name)
print(json.dumps({'program': program, 'every_module': loaded(set(sys.argv[2].split(',')))}))
"""


def test_the_robot_side_loads_no_policy_or_simulator_stack_in_a_fresh_interpreter():
    """The robot program (the thin client, the runner, the adapter template, `vlart robot` and the CLI's parser)
    loads none of NOT_IN_A_ROBOT_PROGRAM and nothing of policies but policies.api; then every robot-side module
    (layers 1, 2 and 4) together loads nothing of HEAVY, through whatever chain of imports (what the static checks,
    one module at a time and module level only, cannot see)."""
    robot_side = sorted(m for m in MODULES if _has_layer(m) and layer(m) in ROBOT_SIDE)
    result = subprocess.run([sys.executable, "-c", ROBOT_PROBE, ",".join(NOT_IN_A_ROBOT_PROGRAM), ",".join(HEAVY),
                             ",".join(robot_side)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == {"program": [], "every_module": []}
