"""The GPU check's CPU fallback: the same parts on the tiny model, and the time budget that cuts parts short."""

import json

import pytest

from benchmarks import gpu_check
from tests.conftest import TINY


def test_parts_start_only_while_the_budget_lasts(monkeypatch):
    ran, written = [], []
    monkeypatch.setattr(gpu_check, "PARTS", {name: (lambda args, name=name: ran.append(name) or {"ok": name})
                                             for name in ("profiles", "timer_check", "serving")})
    ticks = iter([0, 0, 0, 4, 5, 5, 9, 20])  # the start; each part: the check, and its start and end when it runs
    args = gpu_check.parse(["--device", "cpu", "--budget-s", "10"])
    result = gpu_check.run_parts(args, lambda r: written.append(json.dumps(r)), clock=lambda: next(ticks))
    assert ran == ["profiles", "timer_check"]
    assert result["parts"]["serving"] == {"skipped": "the budget of 10 s was spent (20 s)"}
    assert len(written) == 3  # after every part, so a run cut off keeps what it measured


@pytest.mark.slow
def test_the_cpu_fallback_runs_every_part_and_writes_one_stamped_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--model", str(TINY), "--presets", "baseline", "--steps", "2",
                           "--clients", "2", "--requests", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["dtype"] == "float32" and result["model"].endswith("cogact-tiny.yaml")
    assert result["machine"] and result["provenance"]  # stamped as every result is
    profiles = result["parts"]["profiles"]
    assert [row["label"] for row in profiles] == ["baseline", "baseline+compiled"]
    assert profiles[0]["stages_p50_ms"]["total"] > 0 and profiles[1]["speedup_vs_eager"] > 0
    timers = result["parts"]["timer_check"]
    assert timers["timers"] == "monotonic clock" and timers["within_tolerance"]
    eager, batched = result["parts"]["serving"]
    assert (eager["mode"], batched["mode"]) == ("unbatched, eager", "batched, compiled")
    assert eager["requests"] == batched["requests"] == 4 and eager["mean_batch"] == 1
    assert batched["throughput_vs_unbatched_eager"] > 0
