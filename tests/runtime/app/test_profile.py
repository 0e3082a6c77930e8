import json

import runtime.app.policy_loader
from runtime.app.cli import main
from tests.conftest import REPO, TINY

STAGE_KEYS = {"p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "budget_ms", "violations"}


def test_profile_json_schema_and_plot(tmp_path, capsys):
    out = tmp_path / "profile.json"
    png = tmp_path / "profile.png"
    code = main(["profile", "--model", str(TINY), "--steps", "4", "--warmup", "1", "--ddim-steps",
                 "--budget", str(REPO / "configs/budgets/widowx-5hz.yaml"), "--json", str(out), "--plot", str(png)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "speedup vs baseline (p50 of total): baseline 1.00x" in printed and "ddim_step_9" in printed
    assert "speedup vs baseline (mean of total): baseline 1.00x" in printed
    result = json.loads(out.read_text())
    assert set(result) == {"runs", "matmul_peak_gflops", "speedup_vs_first", "speedup_vs_first_mean"}
    (run,) = result["runs"]
    assert run["preset"] == run["label"] == "baseline" and run["steps"] == 4 and len(run["per_step_total_ms"]) == 4
    assert run["compiled"] is False and run["compilation"] is None
    for stage in ("preprocess", "vision", "projector", "llm", "action_head", "postprocess", "total", "ddim_step_0"):
        assert STAGE_KEYS <= set(run["stages"][stage]), stage
    assert run["stages"]["total"]["budget_ms"] == 200.0 and run["stages"]["llm"]["budget_ms"] == 115.0
    assert run["stages"]["total"]["p50_ms"] <= run["stages"]["total"]["p99_ms"] <= run["stages"]["total"]["max_ms"]
    assert result["speedup_vs_first"] == {"baseline": 1.0} and result["speedup_vs_first_mean"] == {"baseline": 1.0}
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_profile_unknown_preset(capsys):
    assert main(["profile", "--model", str(TINY), "--preset", "turbo", "--steps", "1"]) == 2
    assert "unknown preset 'turbo'; available: baseline" in capsys.readouterr().err


def test_presets_take_turns_on_the_same_frame_and_seed(monkeypatch, tmp_path, capsys):
    """Every policy is built before the first step, then one step of each preset per round, warm-up included."""
    monkeypatch.delenv("MS_ASSET_DIR", raising=False)  # the sample frame: no simulator
    load = runtime.app.policy_loader.load_policy_with_preset
    calls: list[tuple] = []

    def recording_load(model, preset, **kwargs):
        policy = load(model, preset, **kwargs)
        predict = policy.predict_action
        calls.append(("built", preset))

        def recorded(obs, seed=None):
            calls.append((preset, seed, obs.image.shape))
            return predict(obs, seed=seed)

        policy.predict_action = recorded
        return policy

    monkeypatch.setattr(runtime.app.policy_loader, "load_policy_with_preset", recording_load)
    out = tmp_path / "profile.json"
    assert main(["profile", "--model", str(TINY), "--preset", "baseline", "--preset", "cache-only",
                 "--steps", "3", "--warmup", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert calls[:2] == [("built", "baseline"), ("built", "cache-only")]
    assert calls[2:] == [(preset, seed, (480, 640, 3)) for seed in range(4) for preset in ("baseline", "cache-only")]
    result = json.loads(out.read_text())
    assert [run["preset"] for run in result["runs"]] == ["baseline", "cache-only"]
    assert all(len(run["per_step_total_ms"]) == 3 for run in result["runs"])
    for key in ("speedup_vs_first", "speedup_vs_first_mean"):
        assert set(result[key]) == {"baseline", "cache-only"} and result[key]["baseline"] == 1.0
    total = {run["preset"]: run["stages"]["total"] for run in result["runs"]}
    p50 = total["baseline"]["p50_ms"] / total["cache-only"]["p50_ms"]
    mean = total["baseline"]["mean_ms"] / total["cache-only"]["mean_ms"]
    assert result["speedup_vs_first"]["cache-only"] == round(p50, 3)
    assert result["speedup_vs_first_mean"]["cache-only"] == round(mean, 3)
    assert "variants interleaved round robin" in printed


def test_profile_rejects_a_repeated_preset(capsys):
    assert main(["profile", "--model", str(TINY), "--preset", "baseline", "--preset", "baseline", "--steps", "1"]) == 2
    assert "--preset: each preset once; given more than once: baseline" in capsys.readouterr().err


def test_compile_both_profiles_every_preset_eager_and_compiled(monkeypatch, tmp_path, capsys):
    from policies import compilation
    from tests.conftest import fake_compiler

    # the machinery, not the compiler
    monkeypatch.setitem(compilation.COMPILERS, "cpu", fake_compiler(lambda name, eager: eager))
    out = tmp_path / "profile.json"
    assert main(["profile", "--model", str(TINY), "--preset", "baseline", "--preset", "cache-only",
                 "--compile", "both", "--steps", "2", "--warmup", "0", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    labels = ["baseline", "baseline+compiled", "cache-only", "cache-only+compiled"]
    assert [run["label"] for run in result["runs"]] == labels
    assert [run["compiled"] for run in result["runs"]] == [False, True, False, True]
    assert result["runs"][1]["compilation"]["parts"] == ["vision", "projector", "llm", "action_head"]
    assert list(result["speedup_vs_first"]) == labels
    assert "[cache-only+compiled]" in printed


def test_the_roofline_divides_counted_flops_by_measured_time(tmp_path, capsys):
    from policies.flops import StepShape, count_flops
    from policies.loading import load_policy
    from runtime.app.profile import PROFILE_INSTRUCTION

    out = tmp_path / "profile.json"
    assert main(["profile", "--model", str(TINY), "--steps", "2", "--warmup", "0", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    peak = result["matmul_peak_gflops"]
    assert peak["peak"] == max(peak["before"], peak["after"]) > 0
    policy = load_policy(TINY)
    tokens = int(policy.language_model.tokenize([PROFILE_INSTRUCTION]).lengths[0])
    counted = count_flops(policy, StepShape(text_tokens=tokens))["executed_gflops_by_stage"]
    (run,) = result["runs"]
    assert set(run["roofline"]) == {"vision", "projector", "llm", "action_head", "total"}
    for stage, rate in run["roofline"].items():
        assert rate["gflop"] == round(counted[stage], 4)
        seconds = run["stages"][stage]["p50_ms"] / 1e3
        assert abs(rate["gflops_per_s"] - counted[stage] / seconds) <= 0.01
        assert abs(rate["fraction_of_peak"] - counted[stage] / seconds / peak["peak"]) <= 1e-4
    assert "matrix-multiply peak of this machine" in printed and "%peak" in printed
