"""`vlart export` and `vlart convert`."""

import json

import pytest
import torch
from safetensors import safe_open

from policies.loading import load_policy
from runtime.app.cli import main
from tests.conftest import CONFIGS, SAMPLE_IMAGE, TINY, run


def predict_json(capsys, model, *extra):
    code, out, err = run(capsys, "predict", "--model", model, "--image", SAMPLE_IMAGE,
                         "--instruction", "put the carrot on the plate", "--seed", "0", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "release"
    assert main(["export", "--model", str(TINY), "--format", "cogact-release", "--out", str(out)]) == 0
    return out


def test_export_release_then_predict_from_it(capsys, release):
    assert (release / "checkpoints" / "cogact-tiny.pt").is_file()
    expected = predict_json(capsys, TINY)
    got = predict_json(capsys, release)
    assert got["actions"] == expected["actions"] and got["normalized_actions"] == expected["normalized_actions"]
    assert got["unnorm_key"] == "bridge_orig"
    other = predict_json(capsys, release, "--unnorm-key", "fractal20220817_data")
    assert other["unnorm_key"] == "fractal20220817_data"


def test_export_cogact_pt(capsys, tmp_path):
    code, out, _ = run(capsys, "export", "--model", TINY, "--format", "cogact-pt", "--out", tmp_path / "w.pt")
    assert code == 0 and "wrote" in out
    data = torch.load(tmp_path / "w.pt", weights_only=True)
    assert list(data["model"]) == ["vision_backbone", "projector", "llm_backbone", "action_model"]
    assert data["model"]["projector"]["projector.0.weight"].shape == (256, 64)


def test_export_safetensors_loads_back(capsys, tmp_path):
    out = tmp_path / "ckpt"
    code, _, err = run(capsys, "export", "--model", TINY, "--format", "safetensors", "--out", out)
    assert code == 0, err
    assert (out / "model.safetensors").is_file() and (out / "config.yaml").is_file()
    assert predict_json(capsys, out)["actions"] == predict_json(capsys, TINY)["actions"]


def test_export_manifest_of_cogact_base(capsys, tmp_path):
    out = tmp_path / "manifest.json"
    code, _, err = run(capsys, "export", "--model", CONFIGS / "cogact-base.yaml", "--format", "cogact-manifest",
                       "--out", out)
    assert code == 0, err
    manifest = json.loads(out.read_text())
    groups = manifest["groups"]
    assert list(groups) == ["vision_backbone", "projector", "llm_backbone", "action_model"]
    assert groups["llm_backbone"]["llm.model.embed_tokens.weight"] == [32064, 4096]
    assert groups["action_model"]["net.positional_embedding"] == [17, 768]
    assert round(sum(manifest["parameters"].values()) / 1e9, 2) == 7.63


def test_export_manifest_of_a_release_reads_no_weights(capsys, release, tmp_path):
    out = tmp_path / "manifest.json"
    assert run(capsys, "export", "--model", release, "--format", "cogact-manifest", "--out", out)[0] == 0
    layout = torch.load(release / "checkpoints" / "cogact-tiny.pt", weights_only=True, mmap=True)["model"]
    shapes = {g: {k: list(t.shape) for k, t in v.items()} for g, v in layout.items()}
    assert json.loads(out.read_text())["groups"] == shapes


def test_export_errors(capsys, tmp_path):
    code, _, err = run(capsys, "export", "--model", tmp_path / "nope.yaml", "--format", "cogact-pt",
                       "--out", tmp_path / "w.pt")
    assert code == 2 and "nope.yaml" in err
    with pytest.raises(SystemExit):
        main(["export", "--model", str(TINY), "--format", "onnx", "--out", str(tmp_path / "x")])


@pytest.mark.parametrize("dtype, stored", [("fp32", "F32"), ("bf16", "BF16")])
def test_convert_release(capsys, release, tmp_path, dtype, stored):
    out = tmp_path / f"converted-{dtype}"
    code, stdout, err = run(capsys, "convert", "--from", release, "--to", out, "--dtype", dtype)
    assert code == 0, err
    assert "peak RSS" in stdout
    with safe_open(out / "model.safetensors", "pt") as weights:
        assert weights.get_slice("language_model.llm.lm_head.weight").get_dtype() == stored
        assert weights.get_slice("action_head.positional_embedding").get_dtype() == "F32"
    policy = load_policy(out)
    assert policy.config.runtime.dtype == {"fp32": "float32", "bf16": "bfloat16"}[dtype]
    assert policy.statistics.unnorm_key == "bridge_orig"
    got = predict_json(capsys, out)
    if dtype == "fp32":
        assert got["actions"] == predict_json(capsys, TINY)["actions"]


def test_convert_keeps_every_unnorm_key(capsys, release, tmp_path):
    out = tmp_path / "converted"
    assert run(capsys, "convert", "--from", release, "--to", out)[0] == 0
    stats = json.loads((out / "dataset_statistics.json").read_text())
    assert sorted(stats) == ["bridge_orig", "fractal20220817_data"]
    assert predict_json(capsys, out, "--unnorm-key", "fractal20220817_data")["unnorm_key"] == "fractal20220817_data"


def test_convert_needs_a_release(capsys, tmp_path):
    code, _, err = run(capsys, "convert", "--from", CONFIGS, "--to", tmp_path / "out")
    assert code == 2 and "not a CogACT release" in err
    code, _, err = run(capsys, "convert", "--from", tmp_path / "missing", "--to", tmp_path / "out")
    assert code == 2 and "no such directory" in err
