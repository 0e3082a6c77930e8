import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import CONFIGS, REPO, SAMPLE_IMAGE, TINY, run


def test_predict_json_prints_the_chunk(capsys):
    code, out, _ = run(capsys, "predict", "--model", str(TINY), "--image", str(SAMPLE_IMAGE),
                       "--instruction", "put the carrot on the plate", "--seed", "3", "--json")
    assert code == 0
    result = json.loads(out)
    actions = np.array(result["actions"])
    normalized = np.array(result["normalized_actions"])
    assert actions.shape == (16, 7) and normalized.shape == (16, 7)
    assert result["unnorm_key"] == "bridge_orig" and result["seed"] == 3
    assert len(result["action"]) == 7
    assert {"vision", "llm", "action_head", "total"} <= set(result["timings_ms"])
    # Same seed, same actions, run after run.
    code, again, _ = run(capsys, "predict", "--model", str(TINY), "--image", str(SAMPLE_IMAGE),
                         "--instruction", "put the carrot on the plate", "--seed", "3", "--json")
    assert json.loads(again)["actions"] == result["actions"]


def test_predict_table_output(capsys):
    code, out, _ = run(capsys, "predict", "--model", str(TINY), "--image", str(SAMPLE_IMAGE),
                       "--instruction", "pick coke can", "--unnorm-key", "fractal20220817_data")
    assert code == 0
    assert "unnorm_key fractal20220817_data" in out
    assert out.count("\n") >= 20 and "ensembled action" in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--image", "/nonexistent.png"], "--image: no such file"),
        (["--image", str(TINY)], "--image: not an image file"),
        (["--image", str(SAMPLE_IMAGE), "--unnorm-key", "nope"], "unnorm_key: 'nope' is not in the dataset statistics"),
    ],
)
def test_predict_errors_exit_2_with_a_message(capsys, extra, message):
    code, _, err = run(capsys, "predict", "--model", str(TINY), "--instruction", "pick", *extra)
    assert code == 2
    assert message in err


def test_predict_empty_instruction(capsys):
    code, _, err = run(capsys, "predict", "--model", str(TINY), "--image", str(SAMPLE_IMAGE), "--instruction", "")
    assert code == 2 and "instructions[0]: expected a non-empty string, got an empty one" in err


def test_unknown_config_key_is_reported(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("name: cogact-tiny", "name: cogact-tiny\nlearning_rate: 1"))
    code, _, err = run(capsys, "info", "--model", str(bad))
    assert code == 2 and "unknown config key(s) learning_rate" in err


def test_info_on_cogact_base_reports_the_published_counts(capsys):
    code, out, _ = run(capsys, "info", "--model", str(CONFIGS / "cogact-base.yaml"), "--json")
    assert code == 0
    counts = json.loads(out)["parameters"]
    assert round(counts["llm"] / 1e6, 1) == 6738.9
    assert round(counts["action_head"] / 1e6, 1) == 89.0
    assert round((counts["vision"] + counts["projector"]) / 1e6, 1) == 802.3  # EfficientVLA Table 1 "vision"
    assert round(counts["total"] / 1e9, 2) == 7.63
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_info_table(capsys):
    code, out, _ = run(capsys, "info", "--model", str(CONFIGS / "cogact-small.yaml"))
    assert code == 0 and "meta device" in out and "total" in out


def test_console_script_is_installed():
    vlart = REPO / ".venv" / "bin" / "vlart"
    command = [str(vlart)] if vlart.exists() else [sys.executable, "-m", "runtime.app.cli"]
    result = subprocess.run([*command, "info", "--model", str(TINY), "--json"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["parameters"]["total"] == 357_703
