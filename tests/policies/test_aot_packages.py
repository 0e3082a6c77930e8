"""Ahead-of-time packages of a part (``policies.aot_packages``): which calls a package takes, one package per
signature and size range, eager for the rest, weights shared with the live module, and a restart that loads what an
earlier start compiled."""

import pytest
import torch

from policies import aot_packages
from policies.aot_packages import PackageCache, covers, package_part
from policies.compilation import Recorder
from tests.policies.test_compilation import needs_cxx


class Scale(torch.nn.Module):
    """A part with a tensor argument and a non-tensor one: x (B, N, 4) -> (B, N, 3)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, double: bool = False) -> torch.Tensor:
        y = self.linear(x).relu()
        return 2 * y if double else y


def test_a_package_takes_the_shapes_it_was_exported_for():
    specs = [[["s0", 2, None], 5], [["s0", 2, None], ["s1", 3, 8]], [["2*s0"]]]
    assert covers(specs, [torch.zeros(4, 5), torch.zeros(4, 8), torch.zeros(8)])
    assert not covers(specs, [torch.zeros(1, 5), torch.zeros(1, 8), torch.zeros(2)])  # below the range
    assert not covers(specs, [torch.zeros(4, 6), torch.zeros(4, 8), torch.zeros(8)])  # a static size differs
    assert not covers(specs, [torch.zeros(4, 5), torch.zeros(3, 8), torch.zeros(8)])  # one symbol, two sizes
    assert not covers(specs, [torch.zeros(4, 5), torch.zeros(4, 9), torch.zeros(8)])  # above the range
    assert not covers(specs, [torch.zeros(4, 5), torch.zeros(4, 8), torch.zeros(7)])  # the derived size differs
    assert not covers(specs, [torch.zeros(4, 5), torch.zeros(4, 8)])  # another number of tensors
    assert not covers(specs, [torch.zeros(4, 5, 1), torch.zeros(4, 8), torch.zeros(8)])  # another rank


def recorded_calls(module: Scale) -> Recorder:
    recorder = Recorder(module.forward)
    with torch.inference_mode():
        for batch, tokens in [(1, 5), (1, 7), (2, 5), (3, 6)]:
            recorder(torch.randn(batch, tokens, 4))
    return recorder


@pytest.fixture
def cache(tmp_path) -> PackageCache:
    return PackageCache("test", root=tmp_path)


@needs_cxx
def test_one_package_per_size_range_and_eager_for_other_signatures(cache, monkeypatch):
    module = Scale()
    compiles = []
    real = torch._inductor.aoti_compile_and_package
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package",
                        lambda *args, **kwargs: compiles.append(1) or real(*args, **kwargs))
    part = package_part("scale", module, module.forward, recorded_calls(module).calls, cache)
    # Batches 2 and 3 make the batch dynamic from 2 up; the batch of one gets its own package (export keeps sizes 0
    # and 1 apart), dynamic in the token count.
    assert len(compiles) == 2 and [len(p) for p in part.packages.values()] == [2]
    with torch.inference_mode():
        for batch, tokens in [(1, 9), (5, 5), (7, 11)]:
            x = torch.randn(batch, tokens, 4)
            torch.testing.assert_close(part(x), module(x), rtol=1e-5, atol=1e-5)
        assert part.eager_signatures == set()
        x = torch.randn(2, 5, 4)
        torch.testing.assert_close(part(x, double=True), module(x, double=True))  # never seen: eager
    assert len(part.eager_signatures) == 1


@needs_cxx
def test_packages_share_the_modules_weights_and_a_restart_loads_them(cache, monkeypatch):
    module = Scale()
    calls = recorded_calls(module).calls
    package_part("scale", module, module.forward, calls, cache)
    files = sorted(path.name for path in cache.root.iterdir())
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package",
                        lambda *a, **k: pytest.fail("a restart compiled a package again"))
    restarted = package_part("scale", module, module.forward, calls, cache)
    assert sorted(path.name for path in cache.root.iterdir()) == files
    with torch.no_grad():
        module.linear.weight.mul_(-2.0)  # the packages read the module's own tensors: no copy to go stale
    with torch.inference_mode():
        x = torch.randn(4, 6, 4)
        torch.testing.assert_close(restarted(x), module(x), rtol=1e-5, atol=1e-5)


def test_the_cache_key_names_the_code_that_made_a_package(monkeypatch, tmp_path):
    first = PackageCache("context", root=tmp_path).path("part")
    assert PackageCache("context", root=tmp_path).path("part") == first
    assert PackageCache("other context", root=tmp_path).path("part") != first
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert aot_packages.default_cache_dir() == tmp_path / "vlart" / "aoti"
