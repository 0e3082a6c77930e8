"""Compiled inference (``runtime.compile``): ``torch.compile`` of a policy's forward passes, checked against eager.

The four parts that do the arithmetic are compiled in place, each as its own graph: the front end's ``encode``, the
projector, the language model (cognition feature) and the DiT (one denoising call, or with the feature cache its
refresh steps' blocks; the DDIM loop around it, with its guidance batch, stays in Python). On CUDA they run as CUDA
graphs ("reduce-overhead"), which removes the launch latency of the denoiser's many small kernels. On a CPU they are
not frozen: freezing (weights as constants, pre-packed) was no faster on the demo model here, and frozen graphs
miss the on-disk cache, so a warm start took longer.

Shapes: the first call compiles for its shapes; a second batch size or prompt length makes torch compile one graph
with those sizes symbolic, which then serves every batch and prompt (a batch of one keeps graphs of its own, and so
do padded and unpadded prompts). ``compile_policy`` runs every such case (``check_inputs``) before it returns, so a
server pays every compile before it says ready, and compares each result with the eager model's: beyond
``tolerance`` the policy stays eager, with one warning. A part that fails later (a shape it cannot compile) falls
back to eager for good, with one warning: never a wrong or missing answer. Compiled code is cached on disk
(``TORCHINDUCTOR_CACHE_DIR``, by default ``~/.cache/vlart/inductor``), so a restart compiles from the cache. Each
preset gets its own graphs (pruning, token selection and the DiT cache change shapes and control flow): a policy is
compiled after its preset is applied.
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

log = logging.getLogger("vlart.policies")

CHECK_INSTRUCTIONS = ("pick up the object", "put the small object on the towel on the left side of the table")
TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}  # abs and rel, per the model's runtime.dtype
RECOMPILE_LIMIT = 64  # graphs per compiled function: every preset's and every policy's graphs share the function


def default_cache_dir() -> Path:
    """Where compiled code is kept between runs: ``$XDG_CACHE_HOME/vlart/inductor`` (``~/.cache/...``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "vlart" / "inductor"


@dataclass
class CompileReport:
    """What ``compile_policy`` did: ``parts`` compiled (empty after a fall-back), the time the compiles and checks
    took, the largest difference from eager on the check inputs and, after a fall-back, why."""

    parts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    max_abs_diff: Optional[float] = None
    fallback: Optional[str] = None

    @property
    def compiled(self) -> bool:
        return bool(self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {"parts": self.parts, "seconds": round(self.seconds, 3), "max_abs_diff": self.max_abs_diff,
                "fallback": self.fallback}


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


def check_inputs(image_size: int) -> list[tuple[list[np.ndarray], list[str]]]:
    """The batches the check runs, chosen so that every graph a server needs is compiled before it answers: one
    image alone with two prompt lengths (the second compile makes the length symbolic), two images with prompts of
    different lengths (padded; the batch size becomes symbolic) and three with the same prompt (not padded)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(image_size, image_size, 3), dtype=np.uint8) for _ in range(3)]
    short, long = CHECK_INSTRUCTIONS
    return [(images[:1], [short]), (images[:1], [long]), (images[:2], [short, long]), (images, [short] * 3)]


def compile_policy(policy: Any, tolerance: Optional[float] = None) -> CompileReport:
    """Compile ``policy``'s parts in place and check them against eager (see the module docstring); returns what
    was done. The policy answers as before whatever happens: compiled where the check passed, else eager."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(default_cache_dir()))
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    tolerance = TOLERANCE[policy.config.runtime.dtype] if tolerance is None else tolerance
    inputs = check_inputs(policy.conventions.image_size)
    expected = [policy.sample_normalized(images, texts, seed=0) for images, texts in inputs]
    options = compile_options(policy.device)
    parts = [CompiledPart(name, owner, attribute, torch.compile(getattr(owner, attribute), **options))
             for name, (owner, attribute) in policy_parts(policy).items()]
    report = CompileReport()
    start = time.perf_counter()
    for part in parts:
        part.install()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            got = [policy.sample_normalized(images, texts, seed=0) for images, texts in inputs]
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
        log.info("compiled %s [%s] (%s) in %.1f s; largest difference from eager %.2g", policy.config.name,
                 policy.preset, ", ".join(report.parts), report.seconds, report.max_abs_diff)
    policy.compilation = report
    return report
