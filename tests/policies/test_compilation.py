"""Compiled inference (``runtime.compile``): the same chunks as eager within 1e-4 for every preset, unbatched and
batched, with and without a continuation prefix, every call after the server's warm-up taken by a compiled package; a
compile that fails or answers differently leaves the policy eager with one warning; a restart loads the packages
instead of compiling them."""

import shutil
import warnings

import numpy as np
import pytest
import torch

from policies import compilation
from policies.acceleration.calibration import calibrate
from policies.api.interface import ChunkContinuation, Observation
from policies.compilation import CompiledPart, compile_policy
from policies.loading import load_policy
from policies.presets import apply_preset, available_presets, load_preset
from tests.conftest import TINY, fake_compiler
from tests.policies.test_batching import INSTRUCTIONS, assert_same, frames, run_alone, run_batched

TOLERANCE = 1e-4
# The shallowest language model on which the presets that drop layers still keep some after the token selection
# (22 of 32 -> 3 of 4): compiling takes time in proportion to depth, and every preset compiles here.
DEEP_TINY = ["llm.num_layers=4"]
PARTS = ["vision", "projector", "llm", "action_head"]
# Inductor writes C++ for the CPU; without a compiler (setup.sh installs g++ as root) the policy stays eager.
needs_cxx = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                               reason="compiling for the CPU needs a C++ compiler (apt-get install g++)")


def eager_signatures(policy) -> dict[str, set]:
    """Per compiled part, the call signatures no package took (they ran eagerly)."""
    parts = [policy.vision.encode, policy.projector.forward, policy.language_model.forward,
             policy.action_head.forward if policy.action_head.feature_cache is None
             else policy.action_head.blocks_with_branches]
    return {part.name: part.compiled.eager_signatures for part in parts if isinstance(part, CompiledPart)}


def steps_with_continuations(images: list[np.ndarray]) -> list[list[tuple]]:
    """Two steps of three sessions; at the second, two of them continue a plan (one frozen row, two frozen rows)."""
    prefix = np.tile(np.array([[0.01, -0.02, 0.0, 0.0, 0.01, 0.0, 1.0]]), (4, 1))
    first = [(Observation(image, text), i, None) for i, (image, text) in enumerate(zip(images, INSTRUCTIONS))]
    second = [(Observation(images[0], INSTRUCTIONS[0]), 10, ChunkContinuation(prefix, 2)),
              (Observation(images[1], INSTRUCTIONS[1]), 11, None),
              (Observation(images[2], INSTRUCTIONS[2]), 12, ChunkContinuation(prefix[:3] * 2, 1))]
    return [first, second]


def assert_close(got_steps, expected_steps):
    assert_same(got_steps, expected_steps, TOLERANCE)


@pytest.fixture(scope="module")
def plan():
    policy = load_policy(TINY, overrides=DEEP_TINY)
    return calibrate(policy, [Observation(image, text) for image, text in zip(frames(3), INSTRUCTIONS)])


@needs_cxx
@pytest.mark.parametrize("preset", available_presets())
def test_compiled_equals_eager_for_every_preset(preset, plan):
    eager = apply_preset(load_policy(TINY, overrides=DEEP_TINY), load_preset(preset), plan)
    compiled = apply_preset(load_policy(TINY, overrides=DEEP_TINY), load_preset(preset), plan)
    selects_tokens = load_preset(preset).tokens is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fall-back to eager would warn: it must not happen here
        report = compile_policy(compiled)
    assert report.parts == PARTS and report.fallback is None and report.max_abs_diff <= TOLERANCE
    assert compiled.metadata["compiled"] == PARTS
    steps = steps_with_continuations(frames(3))
    assert_close(run_alone(compiled, steps), run_alone(eager, steps))
    assert_close(run_batched(compiled, steps), run_alone(eager, steps))
    # The warm-up built a package for every call a server makes (new seeds, prompts, batch sizes and continuations
    # all run compiled), except that a token-selecting language model reads each padded prompt's own length, which
    # does not export: padded batches run its layers eagerly.
    skipped = eager_signatures(compiled)
    assert all(not signatures for part, signatures in skipped.items() if part != "llm")
    assert all("padded" not in signature or "True" in signature for signature in skipped["llm"])
    assert bool(skipped["llm"]) == selects_tokens


@needs_cxx
def test_the_demo_model_compiles_to_the_same_chunks():
    eager, compiled = load_policy("checkpoints/cogact-demo"), load_policy("checkpoints/cogact-demo")
    report = compile_policy(compiled)
    assert report.parts == PARTS and report.fallback is None
    steps = steps_with_continuations(frames(3))
    assert_close(run_alone(compiled, steps), run_alone(eager, steps))
    assert_close(run_batched(compiled, steps), run_alone(eager, steps))


def test_a_compile_that_fails_leaves_the_policy_eager_with_one_warning(monkeypatch):
    policy, eager = load_policy(TINY), load_policy(TINY)

    def broken(*args, **kwargs):
        raise RuntimeError("inductor: no C++ compiler")

    monkeypatch.setitem(compilation.COMPILERS, "cpu", fake_compiler(lambda name, eager: broken))
    with pytest.warns(RuntimeWarning, match=r"runs eagerly: .*no C\+\+ compiler") as caught:
        report = compile_policy(policy)
    assert len(caught) == 1
    assert not report.compiled and policy.metadata["compiled"] == []
    steps = steps_with_continuations(frames(3))
    assert_close(run_alone(policy, steps), run_alone(eager, steps))


def test_a_compile_that_answers_differently_is_not_used(monkeypatch):
    policy, eager = load_policy(TINY), load_policy(TINY)

    def wrong(name, eager):
        def compiled(*args, **kwargs):
            out = eager(*args, **kwargs)
            return out + 1e-2 if isinstance(out, torch.Tensor) else out
        return compiled

    monkeypatch.setitem(compilation.COMPILERS, "cpu", fake_compiler(wrong))
    with pytest.warns(RuntimeWarning, match="differs from eager by up to"):
        report = compile_policy(policy)
    assert not report.compiled and report.max_abs_diff > TOLERANCE
    steps = steps_with_continuations(frames(3))
    assert_close(run_alone(policy, steps), run_alone(eager, steps))


def test_a_part_that_fails_after_warm_up_answers_eagerly_and_stays_eager(monkeypatch):
    policy, eager = load_policy(TINY), load_policy(TINY)
    broken = []

    def flaky(name, function):
        def compiled(*args, **kwargs):
            if broken and name == "vision":  # after the warm-up: a shape the compiler cannot handle
                raise RuntimeError("a new shape broke the compiler")
            return function(*args, **kwargs)
        return compiled

    monkeypatch.setitem(compilation.COMPILERS, "cpu", fake_compiler(flaky))
    assert compile_policy(policy).compiled
    broken.append(True)
    obs = Observation(frames(1)[0], "pick coke can")
    with pytest.warns(RuntimeWarning, match="the compiled vision failed .*broke the compiler.*; it runs eagerly"):
        got = policy.session().predict_action(obs, seed=3)
    np.testing.assert_allclose(got.actions, eager.session().predict_action(obs, seed=3).actions, atol=TOLERANCE)
    assert not isinstance(policy.vision.encode, CompiledPart)  # the part went back to eager for good
    assert isinstance(policy.action_head.forward, CompiledPart)  # the others stay compiled


def test_bad_input_to_a_compiled_policy_is_the_callers_error(monkeypatch):
    policy = load_policy(TINY)
    monkeypatch.setitem(compilation.COMPILERS, "cpu", fake_compiler(lambda name, eager: eager))
    compile_policy(policy)
    with pytest.raises(ValueError, match="instructions"):
        policy.sample_normalized([frames(1)[0]], [], seed=0)
    with pytest.raises(RuntimeError):
        policy.action_head(torch.zeros(1, 3, 7), torch.zeros(1, dtype=torch.long), torch.zeros(1, 5))
    assert isinstance(policy.action_head.forward, CompiledPart) and policy.action_head.forward.active


def test_the_compile_flag_compiles_the_served_and_predicting_policy(monkeypatch, capsys):
    import json

    from tests.conftest import REPO, run

    monkeypatch.setitem(compilation.COMPILERS, "cpu", fake_compiler(lambda name, eager: eager))
    image = REPO / "configs" / "samples" / "bridge_table.png"
    argv = ["predict", "--model", TINY, "--image", image, "--instruction", "pick", "--json"]
    code, out, _ = run(capsys, *argv, "--compile")
    assert code == 0 and json.loads(out)["compiled"] == PARTS
    code, out, _ = run(capsys, *argv)
    assert code == 0 and json.loads(out)["compiled"] == []
