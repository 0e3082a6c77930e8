"""Compiled inference (``runtime.compile``): a policy's forward passes compiled, checked against eager.

The four parts that do the arithmetic are compiled in place, each on its own: the front end's ``encode``, the
projector, the language model (cognition feature) and the DiT (one denoising call, or with the feature cache its
refresh steps' blocks; the DDIM loop around it, with its guidance batch, stays in Python). How depends on the device
(``COMPILERS``):

- **CPU**: ahead-of-time packages (``policies.aot_packages``: torch.export + AOTInductor), one per call signature and
  shape range the check shows, kept on disk; a restart loads them in milliseconds instead of tracing the model again.
- **CUDA**: ``torch.compile`` with CUDA graphs ("reduce-overhead"), which removes the launch latency of the
  denoiser's many small kernels; its compiled code is cached on disk (``TORCHINDUCTOR_CACHE_DIR``, by default
  ``~/.cache/vlart/inductor``). A second batch size or prompt length compiles one graph with those sizes symbolic.

``compile_policy`` runs every case a server meets (``check_inputs``: one image alone with two prompt lengths, padded
and unpadded batches, and a committed prefix for a policy that conditions on one) eagerly, compiles from those calls,
runs them again compiled and compares: beyond ``tolerance`` the policy stays eager, with one warning. So a server pays
every compile before it says ready. A part that fails later (a shape it cannot take) falls back to eager for good,
with one warning: never a wrong or missing answer. Each preset gets its own compiled code (pruning, token selection
and the DiT cache change shapes and control flow): a policy is compiled after its preset is applied.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.utils._pytree as pytree

from policies.aot_packages import Call, PackageCache, flatten, package_part, source_digest, vlart_cache
from policies.api.interface import ChunkContinuation

log = logging.getLogger("vlart.policies")

CHECK_INSTRUCTIONS = ("pick up the object", "put the spoon on the towel next to it",
                      "put the small object on the towel on the left side of the table")
TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}  # abs and rel, per the model's runtime.dtype
RECOMPILE_LIMIT = 64  # graphs per compiled function: every preset's and every policy's graphs share the function


def default_cache_dir() -> Path:
    """Where torch.compile's code is kept between runs."""
    return vlart_cache("inductor")


@dataclass
class CompileReport:
    """What ``compile_policy`` did: ``parts`` compiled (empty after a fall-back), the parts left ``eager`` because
    they could not be compiled (and why), the time the compiles and checks took, the largest difference from eager
    on the check inputs and, after a fall-back of the whole policy, why."""

    parts: list[str] = field(default_factory=list)
    eager: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    max_abs_diff: Optional[float] = None
    fallback: Optional[str] = None

    @property
    def compiled(self) -> bool:
        return bool(self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {"parts": self.parts, "eager": self.eager, "seconds": round(self.seconds, 3),
                "max_abs_diff": self.max_abs_diff, "fallback": self.fallback}


class CompiledPart:
    """``owner.attribute`` (a bound method) replaced by its compiled version; ``remove`` restores the eager one.

    A call that raises is repeated eagerly: if eager succeeds the compile was at fault, and the part goes back to
    eager for good (one warning); if eager raises too, the input was at fault and its error is what the caller
    sees."""

    def __init__(self, name: str, owner: Any, attribute: str, compiled: Callable[..., Any]) -> None:
        self.name = name
        self.owner = owner
        self.attribute = attribute
        self.eager = getattr(owner, attribute)
        self.compiled = compiled
        self.active = False

    def install(self) -> None:
        setattr(self.owner, self.attribute, self)
        self.active = True

    def remove(self) -> None:
        if self.active:
            delattr(self.owner, self.attribute)  # the instance attribute goes; the class's method shows again
            self.active = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.active:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as exc:
            result = self.eager(*args, **kwargs)
            self.remove()
            warnings.warn(f"runtime.compile: the compiled {self.name} failed ({type(exc).__name__}: {exc}); it runs "
                          "eagerly from now on", RuntimeWarning, stacklevel=2)
            return result


def compile_options(device: torch.device) -> dict[str, Any]:
    """``torch.compile`` keyword arguments for ``device``."""
    return {"mode": "reduce-overhead"} if device.type == "cuda" else {}


def torch_compiled(policy: Any, name: str, owner: Any, eager: Callable[..., Any], calls: list[Call]) -> Callable:
    """``torch.compile`` of ``eager``: it compiles on its first calls, the check's."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(default_cache_dir()))
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(eager, **compile_options(policy.device))


# part -> the sections of ``PolicyConfig`` it is built from (the projector maps the front end's width to the LLM's)
PART_CONFIG = {"vision": ("vision", "runtime"), "projector": ("vision", "llm", "runtime"), "llm": ("llm", "runtime"),
               "action_head": ("action_head", "runtime")}


def packaged(policy: Any, name: str, owner: Any, eager: Callable[..., Any], calls: list[Call]) -> Callable:
    """AOTInductor packages of ``eager`` for the signatures and sizes of ``calls`` (``policies.aot_packages``)."""
    # Only the config sections the part is built from, and not the preset: what a preset changes in a part (its
    # layers, their widths, a token selector) is in the part's own key. So models and presets share the packages of
    # the parts they have in common.
    sections = [repr(getattr(policy.config, section)) for section in PART_CONFIG[name]]
    context = "|".join([torch.__version__, source_digest(), *sections])
    return package_part(name, owner, eager, calls, PackageCache(context))


# device type -> how a part is compiled: (policy, part name, owner, eager method, the check's eager calls) -> callable
COMPILERS: dict[str, Callable[..., Callable]] = {"cpu": packaged, "cuda": torch_compiled}


def policy_parts(policy: Any) -> dict[str, tuple[Any, str]]:
    """The compiled parts of a CogACT policy: name -> (object, method name). With the DiT feature cache only the
    refresh steps' blocks are compiled: the cache's step counter decides between refreshing and reusing, and a
    compiled graph would be specialised (recompiled) on every value of it."""
    head = policy.action_head
    return {
        "vision": (policy.vision, "encode"),
        "projector": (policy.projector, "forward"),
        "llm": (policy.language_model, "forward"),
        "action_head": (head, "forward" if head.feature_cache is None else "blocks_with_branches"),
    }


def check_inputs(policy: Any) -> list[tuple[list[np.ndarray], list[str], Optional[ChunkContinuation]]]:
    """The batches the check runs, chosen so that every compiled graph a server needs is built before it answers,
    with sizes that vary where a server's do: one image alone with two prompt lengths, padded batches of two and
    three (prompts of different lengths) and an unpadded batch of three; for a policy that conditions on committed
    rows, also one and three with a prefix."""
    rng = np.random.default_rng(0)
    size = policy.conventions.image_size
    images = [rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) for _ in range(3)]
    short, middle, long = CHECK_INSTRUCTIONS
    batches: list[tuple[list[np.ndarray], list[str], Optional[ChunkContinuation]]] = [
        (images[:1], [short], None), (images[:1], [long], None), (images[:2], [short, long], None),
        (images, [middle, short, short], None), (images, [short] * 3, None)]
    if policy.config.sampler.continuation_method == "conditioning":
        head = policy.config.action_head
        prefix = ChunkContinuation(np.zeros((head.max_committed_rows, head.action_dim)), head.max_committed_rows)
        batches += [(images[:1], [short], prefix), (images, [short] * 3, prefix)]
    return batches


class Recorder:
    """Stands in for a part during the eager run of the check and records each call (``Call``)."""

    def __init__(self, eager: Callable[..., Any]) -> None:
        self.eager = eager
        self.calls: list[Call] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.eager(*args, **kwargs)
        leaves, spec = flatten(args, kwargs)
        leaves = [leaf.clone() if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
        self.calls.append(Call(leaves, spec, pytree.tree_structure(result)))
        return result


def compile_policy(policy: Any, tolerance: Optional[float] = None) -> CompileReport:
    """Compile ``policy``'s parts in place and check them against eager (see the module docstring); returns what
    was done. The policy answers as before whatever happens: compiled where the check passed, else eager."""
    tolerance = TOLERANCE[policy.config.runtime.dtype] if tolerance is None else tolerance
    inputs = check_inputs(policy)
    located = policy_parts(policy)
    recorders = {name: Recorder(getattr(owner, attribute)) for name, (owner, attribute) in located.items()}
    for name, (owner, attribute) in located.items():
        setattr(owner, attribute, recorders[name])
    try:
        expected = [policy.sample_normalized(images, texts, seed=0, continuation=prefix)
                    for images, texts, prefix in inputs]
    finally:
        for owner, attribute in located.values():
            delattr(owner, attribute)
    compiler = COMPILERS.get(policy.device.type, torch_compiled)
    report = CompileReport()
    parts: list[CompiledPart] = []
    start = time.perf_counter()
    try:
        for name, (owner, attribute) in located.items():
            eager = getattr(owner, attribute)
            try:
                compiled = compiler(policy, name, owner, eager, recorders[name].calls)
            except Exception as exc:  # this part cannot be compiled (e.g. it does not export): it stays eager
                report.eager[name] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
                continue
            parts.append(CompiledPart(name, owner, attribute, compiled))
        for part in parts:
            part.install()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            got = [policy.sample_normalized(images, texts, seed=0, continuation=prefix)
                   for images, texts, prefix in inputs]
        failed = [str(w.message) for w in caught if "runtime.compile" in str(w.message)]
        report.max_abs_diff = max(float((g - e).abs().max()) for g, e in zip(got, expected))
        close = all(torch.allclose(g, e, atol=tolerance, rtol=tolerance) for g, e in zip(got, expected))
        if failed:
            report.fallback = "; ".join(failed)
        elif not close:
            report.fallback = (f"the compiled policy differs from eager by up to {report.max_abs_diff:.3g} "
                               f"(tolerance {tolerance:g})")
    except Exception as exc:  # a compile error that eager shares is not the compiler's to judge: stay eager
        report.fallback = f"{type(exc).__name__}: {exc}"
    report.seconds = time.perf_counter() - start
    if report.fallback is not None:
        for part in parts:
            part.remove()
        warnings.warn(f"runtime.compile: {policy.config.name} [{policy.preset}] runs eagerly: {report.fallback}",
                      RuntimeWarning, stacklevel=2)
    else:
        report.parts = [part.name for part in parts]
        if report.eager:
            reasons = "; ".join(f"the {name}: {reason}" for name, reason in report.eager.items())
            warnings.warn(f"runtime.compile: {policy.config.name} [{policy.preset}] runs some parts eagerly: "
                          f"{reasons}", RuntimeWarning, stacklevel=2)
        log.info("compiled %s [%s] (%s) in %.1f s; largest difference from eager %.2g", policy.config.name,
                 policy.preset, ", ".join(report.parts), report.seconds, report.max_abs_diff)
    policy.compilation = report
    return report
