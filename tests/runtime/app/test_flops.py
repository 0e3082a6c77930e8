import json

import numpy as np
import pytest
from torch.utils.flop_counter import FlopCounterMode

from policies.flops import StepShape, count_flops
from runtime.app.cli import main
from tests.conftest import CONFIGS, SAMPLE_IMAGE, TINY


def flops(capsys, *presets):
    args = ["flops", "--model", str(CONFIGS / "cogact-base.yaml"), "--json"]
    for preset in presets:
        args += ["--preset", preset]
    assert main(args) == 0
    return {run["preset"]: run for run in json.loads(capsys.readouterr().out)["runs"]}


def test_cogact_base_baseline_reproduces_the_paper(capsys):
    base = flops(capsys, "baseline")["baseline"]["gflops"]
    assert base["vision"] + base["projector"] == pytest.approx(405.5, abs=0.5)  # EfficientVLA Table 1
    assert base["llm"] + base["lm_head"] == pytest.approx(3726.55, abs=1.0)
    assert base["action_head"] == pytest.approx(57.96, abs=0.1)
    assert base["total"] == pytest.approx(4190, abs=5)  # 4.19 TFLOPs


def test_cogact_base_presets_against_the_paper(capsys):
    runs = flops(capsys, "baseline", "tokens-only", "fastv", "cache-only", "efficientvla", "efficientvla-l28-t112")
    ratio = {name: run["ratio_vs_first"] for name, run in runs.items()}
    assert runs["tokens-only"]["gflops"]["total"] == pytest.approx(1760, abs=5)  # Table 4, T=56: 1.76 TFLOPs
    assert ratio["fastv"] == pytest.approx(0.420, abs=0.002)  # Table 2 FastV: 42.0%
    assert runs["cache-only"]["gflops"]["action_head"] == pytest.approx(11.6, abs=0.2)
    assert ratio["efficientvla"] == pytest.approx(0.289, abs=0.007)  # Table 2: 28.9% (section 4.7: 29.5%)
    assert ratio["efficientvla-l28-t112"] == pytest.approx(0.451, abs=0.002)  # Table 2: 45.1%


@pytest.mark.parametrize("preset", ["baseline", "efficientvla"])
def test_counter_matches_torch_flop_counter(tiny_policy, frame, preset, monkeypatch):
    from runtime.app.policy_loader import load_policy_with_preset

    monkeypatch.delenv("MS_ASSET_DIR", raising=False)  # calibrated on the sample frame (SIMPLER's: test_calibrate_...)
    policy = tiny_policy if preset == "baseline" else load_policy_with_preset(
        str(TINY), preset, overrides=["llm.num_layers=8"], calibration_frames=2)
    text = "put carrot on plate"
    tokens = int(policy.language_model.tokenize([text]).lengths[0])
    with FlopCounterMode(display=False) as counter:
        policy.sample_normalized([frame], [text], seed=0)
    ours = count_flops(policy, StepShape(text_tokens=tokens))["executed_linear_gflops"]
    assert ours == pytest.approx(counter.get_total_flops() * 1e-9, rel=0.01)


def test_flops_table(capsys):
    assert main(["flops", "--model", str(TINY), "--preset", "baseline", "--preset", "efficientvla"]) == 0
    out = capsys.readouterr().out
    assert "efficientvla" in out and "vs first" in out


@pytest.mark.parametrize("preset", ["baseline", "tokens-only", "cache-only", "layers-mlp", "efficientvla",
                                    "efficientvla-l28-t112", "fastv"])
def test_every_preset_runs_through_vlart_predict(capsys, monkeypatch, preset):
    monkeypatch.delenv("MS_ASSET_DIR", raising=False)  # calibrated on the sample frame (SIMPLER's: test_calibrate_...)
    code = main(["predict", "--model", str(TINY), "--image", str(SAMPLE_IMAGE), "--instruction", "put carrot on plate",
                 "--preset", preset, "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["preset"] == preset and np.isfinite(np.array(result["actions"])).all()


@pytest.mark.sim
def test_calibrate_writes_a_plan_usable_by_presets(simpler_assets, tmp_path, capsys):
    """Calibration on SIMPLER frames (a held-out first frame per reset, then frames of the policy's own rollout), the
    one test that renders them: every other preset test calibrates on the sample frame."""
    plan = tmp_path / "plan.json"
    assert main(["calibrate", "--model", str(TINY), "--set", "llm.num_layers=8", "--frames", "4",
                 "--tasks", "ms3_twin/widowx_spoon_on_towel", "--out", str(plan)]) == 0
    assert "on 4 observations from SIMPLER held-out first frames and policy rollout frames" in capsys.readouterr().out
    data = json.loads(plan.read_text())
    assert len(data["layer_importance"]) == 8 and data["samples"] == 4
    assert set(data["layers_to_drop"]) == {str(k) for k in range(1, 8)} and len(data["layers_to_drop"]["6"]) == 2
    code = main(["predict", "--model", str(TINY), "--set", "llm.num_layers=8", "--image", str(SAMPLE_IMAGE),
                 "--instruction", "pick coke can", "--preset", "efficientvla", "--plan", str(plan), "--json"])
    assert code == 0
    capsys.readouterr()
    from runtime.app.policy_loader import load_policy_with_preset

    policy = load_policy_with_preset(str(TINY), "efficientvla", str(plan), overrides=["llm.num_layers=8"])
    assert len(policy.language_model.llm.model.layers) == 6
    assert policy.language_model.token_selector.keep == 56 and policy.action_head.feature_cache.interval == 5
