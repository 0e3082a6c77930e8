import json

from runtime.cli import main
from tests.conftest import REPO, TINY

STAGE_KEYS = {"p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "budget_ms", "violations"}


def test_profile_json_schema_and_plot(tmp_path, capsys):
    out = tmp_path / "profile.json"
    png = tmp_path / "profile.png"
    code = main(["profile", "--model", str(TINY), "--steps", "4", "--warmup", "1", "--ddim-steps",
                 "--budget", str(REPO / "configs/budgets/widowx-5hz.yaml"), "--json", str(out), "--plot", str(png)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "speedup vs baseline: baseline 1.00x" in printed and "ddim_step_9" in printed
    result = json.loads(out.read_text())
    assert set(result) == {"runs", "speedup_vs_first"}
    (run,) = result["runs"]
    assert run["preset"] == "baseline" and run["steps"] == 4 and len(run["per_step_total_ms"]) == 4
    for stage in ("preprocess", "vision", "projector", "llm", "action_head", "postprocess", "total", "ddim_step_0"):
        assert STAGE_KEYS <= set(run["stages"][stage]), stage
    assert run["stages"]["total"]["budget_ms"] == 200.0 and run["stages"]["llm"]["budget_ms"] == 115.0
    assert run["stages"]["total"]["p50_ms"] <= run["stages"]["total"]["p99_ms"] <= run["stages"]["total"]["max_ms"]
    assert result["speedup_vs_first"] == {"baseline": 1.0}
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_profile_unknown_preset(capsys):
    assert main(["profile", "--model", str(TINY), "--preset", "turbo", "--steps", "1"]) == 2
    assert "unknown preset 'turbo'; available: baseline" in capsys.readouterr().err
