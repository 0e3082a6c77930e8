"""The front-end configs through the ``vlart`` command: predict, flops and info on every one, a server round trip
with a fusion front end, and a CLI predict that shows the instruction reaching the visual tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.app.cli import main
from tests.conftest import CONFIGS, SAMPLE_IMAGE, run, running_server

KINDS = ["fiber", "bridgetower", "hicropl", "frozenllm"]
VISUAL_TOKENS = {"fiber": 49, "bridgetower": 197, "hicropl": 196, "frozenllm": 256}


def config(size: str, kind: str) -> str:
    return str(CONFIGS / f"cogact-{size}-{kind}.yaml")


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("kind", KINDS)
def test_predict_runs_with_each_tiny_config(capsys, kind):
    result = run_json(capsys, "predict", "--model", config("tiny", kind), "--image", str(SAMPLE_IMAGE),
                      "--instruction", "put the carrot on the plate", "--seed", "1", "--json")
    actions = np.array(result["actions"])
    assert actions.shape == (16, 7) and np.isfinite(actions).all()
    assert {"preprocess", "vision", "projector", "llm", "action_head", "total"} <= set(result["timings_ms"])
    again = run_json(capsys, "predict", "--model", config("tiny", kind), "--image", str(SAMPLE_IMAGE),
                     "--instruction", "put the carrot on the plate", "--seed", "1", "--json")
    assert again["actions"] == result["actions"]


@pytest.mark.parametrize("kind", ["fiber", "bridgetower"])
def test_predict_with_token_selection_presets(capsys, kind):
    for preset in ("tokens-only", "fastv"):
        result = run_json(capsys, "predict", "--model", config("tiny", kind), "--image", str(SAMPLE_IMAGE),
                          "--instruction", "pick coke can", "--preset", preset, "--json")
        assert result["preset"] == preset and np.isfinite(np.array(result["actions"])).all()


@pytest.mark.parametrize("size", ["tiny", "small"])
@pytest.mark.parametrize("kind", KINDS)
def test_flops_and_info_on_each_config(capsys, size, kind):
    flops = run_json(capsys, "flops", "--model", config(size, kind), "--preset", "baseline", "--preset",
                     "efficientvla", "--json")
    baseline, accelerated = flops["runs"]
    assert baseline["front_end"] == kind and baseline["visual_tokens"] == VISUAL_TOKENS[kind]
    assert baseline["gflops"]["vision"] > 0 and baseline["executed_gflops"] > 0
    assert baseline["llm_tokens"] == VISUAL_TOKENS[kind] + baseline["text_tokens"]
    assert (baseline["instruction_tokens"] is None) == (kind == "frozenllm")
    assert accelerated["gflops"]["vision"] == baseline["gflops"]["vision"]
    assert accelerated["gflops"]["total"] < baseline["gflops"]["total"]
    info = run_json(capsys, "info", "--model", config(size, kind), "--json")
    counts = info["parameters"]
    assert info["model"] == f"cogact-{size}-{kind}" and counts["vision"] > 0
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    if size == "small":  # about the size of cogact-small's vision part (45.0 M), plus the frozen 1536-wide block
        assert 35e6 < counts["vision"] < (80e6 if kind == "frozenllm" else 55e6)


def test_flops_table_names_the_front_end(capsys):
    assert main(["flops", "--model", config("tiny", "hicropl")]) == 0
    out = capsys.readouterr().out
    assert "cogact-tiny-hicropl" in out and "baseline" in out


def test_serve_a_fusion_front_end(capsys):
    from bridge.client import PolicyClient
    from policies.loading import load_policy

    policy = load_policy(config("tiny", "bridgetower"))
    frame = np.random.default_rng(2).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    with running_server(policy) as server, PolicyClient(server.endpoint, timeout_s=30.0) as client:
        info = client.hello()
        assert info["model"]["name"] == "cogact-tiny-bridgetower" and info["conventions"]["image_size"] == 224
        first = client.infer({"primary": frame}, "put the carrot on the plate", seed=4)
        client.reset()
        second = client.infer({"primary": frame}, "open the top drawer", seed=4)
    assert first.actions.shape == (16, 7)
    assert not np.array_equal(first.normalized_actions, second.normalized_actions)


def test_a_missing_front_end_tokenizer_is_named(capsys):
    code = main(["predict", "--model", config("tiny", "fiber"), "--image", str(SAMPLE_IMAGE), "--instruction", "pick",
                 "--set", "vision.fiber.text.tokenizer=no-such-tokenizer"])
    assert code == 2
    assert "vision.fiber.text.tokenizer: 'no-such-tokenizer' is neither a directory" in capsys.readouterr().err
