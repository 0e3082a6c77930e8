import numpy as np
import pytest
import torch

from policies.factory import build_policy, save_pretrained
from policies.api.interface import Observation
from policies.loading import load_policy
from policies.config import load_config
from tests.conftest import TINY


def test_predict_shapes_dtypes_and_timings(tiny_policy, frame):
    # The ranges (clipped to [-1, 1], the gripper binarised, q01..q99) are unnormalize's: test_normalization.py.
    tiny_policy.reset()
    out = tiny_policy.predict_action(Observation(frame, "put the carrot on the plate"), seed=0)
    assert out.actions.shape == (16, 7) and out.actions.dtype == np.float32
    assert out.normalized_actions.shape == (16, 7) and out.normalized_actions.dtype == np.float32
    assert out.action.shape == (7,) and out.action.dtype == np.float32
    # First step of an episode: the ensemble has one chunk, so it returns that chunk's first row.
    np.testing.assert_array_equal(out.action, out.actions[0])
    assert set(out.timings_ms) == {"preprocess", "vision", "projector", "llm", "action_head", "postprocess", "total"}
    assert out.timings_ms["total"] >= out.timings_ms["llm"] > 0


def test_stage_shapes(tiny_policy, frame):
    pixels = tiny_policy.vision.preprocess([frame])
    assert pixels["dino"].shape == pixels["siglip"].shape == (1, 3, 224, 224)
    with torch.no_grad():
        features = tiny_policy.vision(pixels)
        visual = tiny_policy.projector(features)
        cognition = tiny_policy.language_model(visual, tiny_policy.language_model.tokenize(["lift the cup"]))
    assert features.shape == (1, 256, 64) and visual.shape == (1, 256, 64) and cognition.shape == (1, 64)
    assert features.dtype == visual.dtype == cognition.dtype == torch.float32
    assert [m.out_features for m in tiny_policy.projector.projector if isinstance(m, torch.nn.Linear)] == [256, 64, 64]


def test_seed_gives_bit_identical_actions_and_noise_is_cogacts(tiny_policy, frame):
    obs = Observation(frame, "stack the green cube on the yellow cube")
    first = tiny_policy.sample_normalized([frame], [obs.instruction], seed=7)
    second = tiny_policy.sample_normalized([frame], [obs.instruction], seed=7)
    other = tiny_policy.sample_normalized([frame], [obs.instruction], seed=8)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    expected_noise = torch.randn((1, 16, 7), generator=torch.Generator().manual_seed(7))
    assert torch.equal(tiny_policy.initial_noise(1, 7), expected_noise)


def test_cfg_scale_changes_the_sample(tiny_policy, frame):
    guided = tiny_policy.sample_normalized([frame], ["open the drawer"], seed=1, cfg_scale=1.5)
    unguided = tiny_policy.sample_normalized([frame], ["open the drawer"], seed=1, cfg_scale=1.0)
    assert not torch.allclose(guided, unguided)


def test_inference_crop_shows_the_policy_the_central_area(frame):
    from policies.image_transforms import center_crop

    crop = center_crop(frame, 0.9)
    assert crop.shape == (455, 607, 3)  # each side scaled by sqrt(0.9), centred
    assert np.array_equal(crop, frame[12:467, 16:623]) and center_crop(frame, 1.0) is frame
    cropping = load_policy(TINY, overrides=["vision.inference_crop_area=0.9"])
    whole = load_policy(TINY)
    acted = cropping.sample_normalized([frame], ["open the drawer"], seed=3)
    assert torch.equal(acted, whole.sample_normalized([crop], ["open the drawer"], seed=3))
    assert not torch.equal(acted, whole.sample_normalized([frame], ["open the drawer"], seed=3))
    with pytest.raises(ValueError, match="vision.inference_crop_area must be in"):
        load_policy(TINY, overrides=["vision.inference_crop_area=0"])


def test_ensemble_accumulates_and_reset_clears(tiny_policy, frame):
    tiny_policy.reset()
    outs = [tiny_policy.predict_action(Observation(frame, "pick coke can"), seed=s) for s in range(3)]
    assert len(tiny_policy.ensemble) == 3
    assert not np.array_equal(outs[2].action, outs[2].actions[0])
    tiny_policy.reset()
    assert len(tiny_policy.ensemble) == 0


def test_conventions(tiny_policy):
    conv = tiny_policy.conventions
    assert conv.action_dim == 7 and conv.chunk_length == 16 and conv.unnorm_key == "bridge_orig"
    assert conv.action_names == ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
    assert conv.ensemble_horizon == 7 and conv.control_rate_hz == 5.0
    assert conv.to_dict()["image_keys"] == ("primary",)


@pytest.mark.parametrize(
    "image, instruction, message",
    [
        (np.zeros((480, 640, 3), dtype=np.float64), "pick", r"images\[0\]: expected dtype uint8"),
        (np.zeros((480, 640), dtype=np.uint8), "pick", r"images\[0\]: expected shape \(H, W, 3\)"),
        (np.zeros((480, 640, 3), dtype=np.uint8), "   ", r"instructions\[0\]: expected a non-empty string, got an empty one"),
        (np.zeros((480, 640, 3), dtype=np.uint8), None, r"instructions\[0\]: expected a non-empty string, got NoneType"),
    ],
)
def test_bad_input_raises_a_clear_error(tiny_policy, image, instruction, message):
    with pytest.raises(ValueError, match=message):
        tiny_policy.predict_action(Observation(image, instruction))


def test_unknown_unnorm_key_lists_available():
    with pytest.raises(ValueError, match="'libero' is not in the dataset statistics; available: bridge_orig, fractal"):
        load_policy(TINY, unnorm_key="libero")


def test_policy_without_statistics_refuses_to_unnormalise(frame):
    config = load_config(TINY)
    config.actions.statistics = None
    policy = build_policy(config)
    with pytest.raises(ValueError, match="no action statistics"):
        policy.predict_action(Observation(frame, "pick"))
    assert policy.sample_normalized([frame], ["pick"], seed=0).shape == (1, 16, 7)


def test_same_config_builds_same_weights():
    a = load_policy(TINY)
    b = load_policy(TINY)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_save_load_round_trip_is_bit_exact(tiny_policy, frame, tmp_path):
    directory = save_pretrained(tiny_policy, tmp_path / "ckpt")
    assert {p.name for p in directory.iterdir()} == {"config.yaml", "model.safetensors", "dataset_statistics.json",
                                                     "tokenizer"}
    loaded = load_policy(directory)
    original_state = tiny_policy.state_dict()
    loaded_state = loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    assert all(torch.equal(original_state[k], loaded_state[k]) for k in original_state)
    tiny_policy.reset()
    obs = Observation(frame, "put eggplant into basket")
    want = tiny_policy.predict_action(obs, seed=3)
    got = loaded.predict_action(obs, seed=3)
    np.testing.assert_array_equal(got.actions, want.actions)
    np.testing.assert_array_equal(got.normalized_actions, want.normalized_actions)
    assert loaded.conventions == tiny_policy.conventions
    # A checkpoint keeps every unnorm key of its statistics file.
    assert load_policy(directory, unnorm_key="fractal20220817_data").conventions.unnorm_key == "fractal20220817_data"


def test_float16_checkpoint_halves_the_file_and_runs_in_float32(tiny_policy, tmp_path):
    full = save_pretrained(tiny_policy, tmp_path / "fp32") / "model.safetensors"
    half = save_pretrained(tiny_policy, tmp_path / "fp16", weights_dtype=torch.float16) / "model.safetensors"
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_policy(tmp_path / "fp16")
    for name, tensor in loaded.state_dict().items():
        original = tiny_policy.state_dict()[name]
        assert tensor.dtype == original.dtype
        if original.is_floating_point():
            torch.testing.assert_close(tensor, original.to(torch.float16).to(original.dtype), rtol=0, atol=0)


def test_checkpoint_with_mismatched_weights_is_refused(tiny_policy, tmp_path):
    from safetensors.torch import load_file, save_file

    directory = save_pretrained(tiny_policy, tmp_path / "ckpt")
    state = load_file(str(directory / "model.safetensors"))
    state.pop("action_head.final_layer.linear.bias")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(ValueError, match="missing: \\['action_head.final_layer.linear.bias'\\].*unexpected: \\['extra"):
        load_policy(directory)


def test_model_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(FileNotFoundError, match="directory has no config.yaml"):
        load_policy(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="expected a model config"):
        load_policy(tmp_path / "weights.bin")


def test_bfloat16_runtime_keeps_the_action_head_in_float32(frame):
    config = load_config(TINY)
    config.runtime.dtype = "bfloat16"
    policy = build_policy(config)
    assert policy.language_model.llm.model.embed_tokens.weight.dtype == torch.bfloat16
    assert policy.vision.dino.embeddings.cls_token.dtype == torch.bfloat16
    assert policy.action_head.positional_embedding.dtype == torch.float32
    out = policy.predict_action(Observation(frame, "put the spoon on the towel"), seed=0)
    assert out.actions.shape == (16, 7) and np.isfinite(out.actions).all()
