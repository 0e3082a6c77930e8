"""Compiled parts for the CPU: torch.export + AOTInductor packages, kept on disk, loaded in milliseconds.

torch.compile keeps its compiled code on disk too, but every start traces the model again with Dynamo: on the demo
model that was most of a compiled server's warm start (18 s against 4.5 s eager in
``docs/results/compile_start.json`` as of commit c1ef500). A package of an exported program only has to be loaded.

A part (``policies.compilation.policy_parts``) is exported per *call signature* seen in the compile check (the tree
of its arguments, their non-tensor values, each tensor's dtype and rank). Sizes that changed between those calls (the
batch, the prompt length) are exported as dynamic (``Dim.AUTO``), the others as static; calls the first package does
not cover (a batch of one next to a batch of three: export keeps sizes 0 and 1 apart) get a package of their own.

Packages hold no weights: the part's own parameters and buffers are loaded into them by name and shared
(``user_managed``), so a compiled policy takes no more memory and a package serves any checkpoint of the same shape.
They live under ``~/.cache/vlart/aoti``, named by a digest of what decides their code: torch's version, vlart's
policy sources, the config sections the part is built from, the part, the signature, the names and shapes of its
constants and the sizes it was exported with.

At run time each call is checked against the packages' input specs (static sizes, dynamic ranges, sizes that must be
equal); a call that no package covers runs eagerly: never a wrong answer, only a slower one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import sympy
import torch
import torch.utils._pytree as pytree
from torch.export import Dim
from torch.utils._sympy.numbers import int_oo

log = logging.getLogger("vlart.policies")

POLICY_SOURCES = Path(__file__).resolve().parent
# A dimension of an input: a static size, or (symbol, lowest, highest or None) for a dynamic one, or (expression,)
# for a size that follows from the symbols.
DimSpec = Union[int, list]


def vlart_cache(folder: str) -> Path:
    """``$XDG_CACHE_HOME/vlart/FOLDER`` (``~/.cache/vlart/FOLDER`` without it): where compiled code is kept."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "vlart" / folder


def default_cache_dir() -> Path:
    return vlart_cache("aoti")


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """A digest of vlart's policy sources: a package compiled from other code is not reused. Read once per
    process (every part of every compiled policy asks), as the sources do not change under it."""
    digest = hashlib.sha256()
    for path in sorted(POLICY_SOURCES.rglob("*.py")):
        digest.update(str(path.relative_to(POLICY_SOURCES)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class Call:
    """One recorded call of a part: its flattened arguments and its result's tree."""

    leaves: list[Any]
    spec: pytree.TreeSpec
    output_spec: pytree.TreeSpec

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [leaf for leaf in self.leaves if isinstance(leaf, torch.Tensor)]

    @property
    def size(self) -> int:
        return sum(tensor.numel() for tensor in self.tensors)


def flatten(args: tuple, kwargs: dict) -> tuple[list[Any], pytree.TreeSpec]:
    return pytree.tree_flatten((args, kwargs))


def signature(leaves: list[Any], spec: pytree.TreeSpec) -> str:
    """What must match for a package to take a call, apart from the sizes: the argument tree, the non-tensor values
    and each tensor's dtype and rank."""
    parts = [str(spec)]
    for leaf in leaves:
        parts.append(f"T[{leaf.dtype},{leaf.dim()}]" if isinstance(leaf, torch.Tensor) else repr(leaf))
    return "|".join(parts)


class FlatCall(torch.nn.Module):
    """The part as a module of a list of its tensor arguments, the form torch.export takes: the other leaves are
    fixed; the result comes back flattened."""

    def __init__(self, owner: torch.nn.Module, method: Callable[..., Any], call: Call) -> None:
        super().__init__()
        self.owner = owner  # registered, so that its parameters are the program's
        self.method = method
        self.leaves = [None if isinstance(leaf, torch.Tensor) else leaf for leaf in call.leaves]
        self.slots = [i for i, leaf in enumerate(call.leaves) if isinstance(leaf, torch.Tensor)]
        self.spec = call.spec

    def forward(self, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        leaves = list(self.leaves)
        for slot, tensor in zip(self.slots, tensors):
            leaves[slot] = tensor
        args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        return tuple(pytree.tree_leaves(self.method(*args, **kwargs)))


def input_specs(program: torch.export.ExportedProgram) -> list[list[DimSpec]]:
    """Per user input of ``program``, per dimension: its static size, [symbol, lowest, highest (None: unbounded)]
    or [expression] of the symbols."""
    user_inputs = set(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        dims: list[DimSpec] = []
        for size in node.meta["val"].shape:
            if isinstance(size, int):
                dims.append(size)
                continue
            expression = size.node.expr
            if isinstance(expression, sympy.Symbol):
                bounds = program.range_constraints.get(expression)
                lowest = int(bounds.lower) if bounds is not None else 0
                unbounded = bounds is None or bounds.upper in (int_oo, sympy.oo)
                highest = None if unbounded else int(bounds.upper)
                dims.append([str(expression), lowest, highest])
            else:
                dims.append([str(expression)])
        specs.append(dims)
    return specs


def covers(specs: list[list[DimSpec]], tensors: list[torch.Tensor]) -> bool:
    """Whether a package exported with input ``specs`` takes ``tensors`` (their shapes, nothing else)."""
    if len(specs) != len(tensors):
        return False
    bound: dict[str, int] = {}
    derived: list[tuple[str, int]] = []
    for dims, tensor in zip(specs, tensors):
        if len(dims) != tensor.dim():
            return False
        for spec, size in zip(dims, tensor.shape):
            if isinstance(spec, int):
                if spec != size:
                    return False
            elif len(spec) == 1:
                derived.append((spec[0], size))
            else:
                symbol, lowest, highest = spec
                if size < lowest or (highest is not None and size > highest) or bound.setdefault(symbol, size) != size:
                    return False
    for expression, size in derived:
        value = sympy.sympify(expression).subs({sympy.Symbol(k): v for k, v in bound.items()})
        if not value.is_number or int(value) != size:
            return False
    return True


@dataclass
class Package:
    """A loaded package and the input specs it was exported with."""

    runner: Any
    specs: list[list[DimSpec]]
    output_spec: pytree.TreeSpec

    def run(self, tensors: list[torch.Tensor]) -> Any:
        return pytree.tree_unflatten(list(self.runner(tensors)), self.output_spec)


def constants_of(module: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """The tensors the package asks for by name, from the live module (its parameters, buffers and plain tensor
    attributes)."""
    found = {}
    for name in names:
        value: Any = module
        for attribute in name.split("."):
            value = getattr(value, attribute)
        found[name] = value
    return found


@dataclass
class PackageCache:
    """Packages on disk under ``root``, named by the digest of ``context`` (what the whole policy shares) and the
    part's own key."""

    context: str
    root: Path = field(default_factory=default_cache_dir)

    def path(self, key: str) -> Path:
        return self.root / f"{hashlib.sha256((self.context + key).encode()).hexdigest()[:32]}.pt2"

    def load_or_compile(self, module: FlatCall, example: list[torch.Tensor], dynamic: list[dict[int, Any]],
                        key: str) -> tuple[Any, list[list[DimSpec]]]:
        path = self.path(key)
        meta = path.with_suffix(".json")
        if not (path.exists() and meta.exists()):
            with torch.no_grad():
                program = torch.export.export(module, (example,), dynamic_shapes=(dynamic,), strict=False)
            self.root.mkdir(parents=True, exist_ok=True)
            # Written beside and renamed: a second process starting at the same time never reads half a package.
            fd, partial = tempfile.mkstemp(suffix=".pt2", dir=self.root)
            os.close(fd)
            torch._inductor.aoti_compile_and_package(
                program, package_path=partial, inductor_configs={"aot_inductor.package_constants_in_so": False})
            meta_partial = partial + ".json"
            Path(meta_partial).write_text(json.dumps(input_specs(program)))
            os.replace(partial, path)
            os.replace(meta_partial, meta)
        runner = torch._inductor.aoti_load_package(str(path))
        runner.load_constants(constants_of(module, runner.get_constant_fqns()), check_full_update=True,
                              user_managed=True)
        return runner, json.loads(meta.read_text())


def varying_dims(calls: list[Call]) -> list[dict[int, Any]]:
    """Per tensor argument, the dims whose size differs between ``calls``: dynamic (``Dim.AUTO``)."""
    shapes = [[tuple(t.shape) for t in call.tensors] for call in calls]
    dynamic = []
    for index, sizes in enumerate(zip(*shapes)):
        dynamic.append({dim: Dim.AUTO for dim in range(len(sizes[0])) if len({s[dim] for s in sizes}) > 1})
    return dynamic


class PackagedPart:
    """A part's packages by signature; calls them, or the eager method for a call no package covers."""

    def __init__(self, name: str, eager: Callable[..., Any]) -> None:
        self.name = name
        self.eager = eager
        self.packages: dict[str, list[Package]] = {}
        self.eager_signatures: set[str] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves, spec = flatten(args, kwargs)
        key = signature(leaves, spec)
        tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
        for package in self.packages.get(key, ()):
            if covers(package.specs, tensors):
                return package.run(tensors)
        if key not in self.eager_signatures:
            self.eager_signatures.add(key)
            log.info("runtime.compile: no package of the %s takes %s; such calls run eagerly", self.name,
                     [tuple(t.shape) for t in tensors])
        return self.eager(*args, **kwargs)


def package_part(name: str, owner: torch.nn.Module, eager: Callable[..., Any], calls: list[Call],
                 cache: PackageCache) -> PackagedPart:
    """Packages for every signature in ``calls`` (recorded eager calls of ``owner``'s method ``eager``). A signature
    that does not export (code that depends on the data, such as a padded prompt's length) gets none: its calls run
    eagerly. The first such error is raised when no signature exports at all."""
    part = PackagedPart(name, eager)
    groups: dict[str, list[Call]] = {}
    for call in calls:
        groups.setdefault(signature(call.leaves, call.spec), []).append(call)
    errors = []
    for key, group in groups.items():
        try:
            part.packages[key] = signature_packages(name, owner, eager, group, key, cache)
        except Exception as exc:
            errors.append(exc)
            log.info("runtime.compile: the %s does not export for %s (%s: %s); such calls run eagerly", name,
                     [tuple(t.shape) for t in group[0].tensors], type(exc).__name__,
                     (str(exc).strip().splitlines() or [""])[0])
    if errors and not part.packages:
        raise errors[0]
    return part


def signature_packages(name: str, owner: torch.nn.Module, eager: Callable[..., Any], calls: list[Call], key: str,
                       cache: PackageCache) -> list[Package]:
    """Packages that together take every call of one signature: the first exported from the largest call with the
    sizes that vary dynamic, the next from the largest call it does not take, and so on."""
    packages = []
    remaining = calls
    while remaining:
        example = max(remaining, key=lambda call: call.size)
        dynamic = varying_dims(remaining)
        module = FlatCall(owner, eager, example)
        constants = sorted((n, tuple(t.shape)) for n, t in [*owner.named_parameters(), *owner.named_buffers()])
        shapes = [tuple(t.shape) for t in example.tensors]
        selector = getattr(owner, "token_selector", None)  # changes the language model's code, not its weights
        runner, specs = cache.load_or_compile(
            module, example.tensors, dynamic,
            f"{name}|{type(owner).__name__}.{eager.__name__}|{key}|{constants}|{selector!r}|{shapes}|"
            f"{[sorted(d) for d in dynamic]}")
        if not covers(specs, example.tensors):
            raise RuntimeError(f"the {name} package does not take the call it was exported from")
        packages.append(Package(runner, specs, example.output_spec))
        remaining = [call for call in remaining if not covers(specs, call.tensors)]
    return packages
