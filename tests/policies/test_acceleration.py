import math

import numpy as np
import pytest
import torch

from policies.acceleration.calibration import CalibrationPlan, calibrate
from policies.acceleration.dit_cache import DiTFeatureCache
from policies.acceleration.pruning import scaled_depth
from policies.acceleration.token_selection import FastVSelector, TaskAwareSelector, text_to_visual_attention
from policies.loading import load_policy
from policies.api.interface import Observation
from policies.presets import apply_preset, available_presets, load_preset
from tests.conftest import TINY


@pytest.fixture()
def deep_tiny():
    """The tiny policy with 8 LLM layers, so pruning and token selection have room to act."""
    return load_policy(TINY, overrides=["llm.num_layers=8"])


def observations(frame, count=2):
    return [Observation(frame, text) for text in ("put carrot on plate", "stack the green block")[:count]]


def test_identity_layer_is_scored_least_important(deep_tiny, frame):
    layer = deep_tiny.language_model.llm.model.layers[5]
    with torch.no_grad():
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()  # both residual branches add zero: output == input
    plan = calibrate(deep_tiny, observations(frame))
    assert int(np.argmin(plan.layer_importance)) == 5
    assert plan.layer_importance[5] == pytest.approx(0.0, abs=1e-6)
    assert all(score > 1e-4 for i, score in enumerate(plan.layer_importance) if i != 5)
    assert plan.layers_to_drop(7) == [5]
    assert plan.samples == 2 and len(plan.mlp_channel_order[0]) == 128


def test_activation_rule_ranks_a_dead_channel_last(deep_tiny, frame):
    mlp = deep_tiny.language_model.llm.model.layers[2].mlp
    with torch.no_grad():
        mlp.down_proj.weight[:, 17] = 0.0  # channel 17 contributes nothing
    plan = calibrate(deep_tiny, observations(frame, 1))
    assert plan.mlp_channel_order[2][-1] == 17
    weight_plan = calibrate(deep_tiny, observations(frame, 1), mlp_rule="weight")
    assert weight_plan.mlp_channel_order[2][-1] == 17 and weight_plan.mlp_rule == "weight"


def test_calibration_sees_the_frame_the_policy_acts_on(frame):
    from policies.image_transforms import center_crop

    cropping = load_policy(TINY, overrides=["llm.num_layers=4", "vision.inference_crop_area=0.5"])
    whole = load_policy(TINY, overrides=["llm.num_layers=4"])  # the same weights (seeded), acting on whole frames
    plan = calibrate(cropping, observations(frame))
    # The cropping policy's hooks see exactly what the other sees on the central half of the frame, not the frame.
    cropped = calibrate(whole, observations(center_crop(frame, 0.5)))
    assert plan.layer_importance == cropped.layer_importance
    assert plan.mlp_channel_order == cropped.mlp_channel_order
    assert plan.layer_importance != calibrate(whole, observations(frame)).layer_importance


def test_pruned_model_has_the_planned_shape_and_runs(deep_tiny, frame, tmp_path):
    plan = calibrate(deep_tiny, observations(frame))
    plan.save(tmp_path / "plan.json")
    plan = CalibrationPlan.load(tmp_path / "plan.json")
    expected_keep = scaled_depth(22, 32, 8)
    dropped = plan.layers_to_drop(expected_keep)
    kept_layers = [deep_tiny.language_model.llm.model.layers[i] for i in range(8) if i not in dropped]
    apply_preset(deep_tiny, load_preset("layers-mlp"), plan)
    layers = deep_tiny.language_model.llm.model.layers
    assert expected_keep == 6 and len(layers) == 6 and deep_tiny.language_model.llm.model.config.num_hidden_layers == 6
    assert all(a is b for a, b in zip(layers, kept_layers))
    assert [layer.self_attn.layer_idx for layer in layers] == list(range(6))
    for layer in layers:
        assert layer.mlp.gate_proj.weight.shape == (96, 64) and layer.mlp.up_proj.weight.shape == (96, 64)
        assert layer.mlp.down_proj.weight.shape == (64, 96)
    out = deep_tiny.predict_action(Observation(frame, "put carrot on plate"), seed=0)
    assert out.actions.shape == (16, 7) and np.isfinite(out.actions).all()
    assert deep_tiny.metadata["preset"] == "layers-mlp"


def test_mlp_pruning_keeps_the_planned_channels_exactly(deep_tiny, frame):
    plan = calibrate(deep_tiny, observations(frame, 1))
    survivor = next(i for i in range(8) if i not in plan.layers_to_drop(6))
    original = deep_tiny.language_model.llm.model.layers[survivor].mlp
    gate, up, down = original.gate_proj.weight.clone(), original.up_proj.weight.clone(), original.down_proj.weight.clone()
    apply_preset(deep_tiny, load_preset("layers-mlp"), plan)
    survivors = [i for i in range(8) if i not in plan.layers_to_drop(6)]
    pruned = deep_tiny.language_model.llm.model.layers[survivors.index(survivor)].mlp
    kept = plan.channels_to_keep(survivor, 96)
    assert kept == sorted(plan.mlp_channel_order[survivor][:96])
    assert torch.equal(pruned.gate_proj.weight, gate[kept]) and torch.equal(pruned.up_proj.weight, up[kept])
    assert torch.equal(pruned.down_proj.weight, down[:, kept])


def test_task_aware_selection_on_a_constructed_map():
    # 12 visual tokens; relevance decreasing with index except where set. Hidden states: tokens 0-3 (the key
    # tokens) point along e0; tokens 6 and 9 are orthogonal to them (most diverse); the rest are close to e0.
    relevance = torch.tensor([[9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 0.1, 0.3, 0.2, 0.05, 0.15, 0.25]])
    hidden = torch.zeros(1, 12, 4)
    hidden[0, :, 0] = 1.0
    hidden[0, [6, 9], 0] = 0.0
    hidden[0, 6, 1] = 1.0
    hidden[0, 9, 2] = 1.0
    hidden[0, [7, 8, 10, 11], 1] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    selector = TaskAwareSelector(keep=8, key=4, alpha=0.5)
    kept = selector.select(relevance, hidden)
    # key: 0-3; task: floor(0.5 * 4) = 2 next by relevance: 4, 5; diverse: the 2 least similar to the key tokens.
    assert kept.tolist() == [[0, 1, 2, 3, 4, 5, 6, 9]]
    assert FastVSelector(keep=8).select(relevance, hidden).tolist() == [[0, 1, 2, 3, 4, 5, 7, 11]]


def test_relevance_matches_eager_attention(deep_tiny):
    lm = deep_tiny.language_model
    model = lm.llm.model
    prompt = lm.tokenize(["open the drawer"])
    visual = torch.randn(1, 256, 64)
    with torch.no_grad():
        embeds, _ = lm.embed_sequence(visual, prompt)
        positions = torch.arange(embeds.shape[1])[None]
        cos, sin = model.rotary_emb(embeds, positions)
        hidden = model.layers[0](embeds, attention_mask=None, position_ids=positions, position_embeddings=(cos, sin))
        relevance = text_to_visual_attention(model.layers[1], hidden, (cos, sin), 256)
        model.config._attn_implementation = "eager"  # transformers returns attention probabilities only from eager
        try:
            attentions = lm.llm(inputs_embeds=embeds, output_attentions=True).attentions
        finally:
            model.config._attn_implementation = "sdpa"
    probs = attentions[1][0]  # (H, S, S)
    expected = probs[:, 257:, 1:257].mean(dim=0).sum(dim=0)
    torch.testing.assert_close(relevance[0], expected, atol=1e-5, rtol=1e-4)


def test_token_selection_keeps_bos_text_and_positions(deep_tiny):
    lm = deep_tiny.language_model
    prompt = lm.tokenize(["pick coke can"])
    visual = torch.randn(1, 256, 64)
    with torch.no_grad():
        baseline = lm(visual, prompt)
        lm.token_selector = TaskAwareSelector(keep=256)
        unchanged = lm(visual, prompt)
        lm.token_selector = TaskAwareSelector(keep=56)
        selected = lm(visual, prompt)
    assert torch.equal(baseline, unchanged)  # keeping every token changes nothing
    kept = lm.last_kept_visual[0]
    assert kept.shape == (56,) and bool((kept[1:] > kept[:-1]).all()) and int(kept.max()) < 256
    assert not torch.allclose(baseline, selected)
    assert torch.nn.functional.cosine_similarity(baseline, selected).item() > 0.5


def test_dit_cache_interval_one_is_bit_identical(tiny_policy, frame):
    baseline = tiny_policy.sample_normalized([frame], ["pick coke can"], seed=3)
    tiny_policy.action_head.feature_cache = DiTFeatureCache(interval=1)
    try:
        cached = tiny_policy.sample_normalized([frame], ["pick coke can"], seed=3)
    finally:
        tiny_policy.action_head.feature_cache = None
    assert torch.equal(baseline, cached)


def test_dit_cache_interval_five_runs_blocks_twice_per_sample(tiny_policy, frame):
    cache = DiTFeatureCache(interval=5)
    tiny_policy.action_head.feature_cache = cache
    try:
        cached = tiny_policy.sample_normalized([frame, frame], ["pick coke can", "open drawer"], seed=3)
        assert cache.block_calls == 2 * len(tiny_policy.action_head.blocks)
        cache.block_calls = 0
        tiny_policy.sample_normalized([frame], ["pick coke can"], seed=3)
        assert cache.block_calls == 2 * len(tiny_policy.action_head.blocks)
    finally:
        tiny_policy.action_head.feature_cache = None
    assert cached.shape == (2, 16, 7) and torch.isfinite(cached).all()


def test_presets_need_a_plan_that_fits(deep_tiny, frame):
    with pytest.raises(ValueError, match="needs a calibration plan"):
        apply_preset(deep_tiny, load_preset("efficientvla"))
    wrong = CalibrationPlan.placeholder("other", 3, 128)
    with pytest.raises(ValueError, match="scores 3 layers; this model has 8"):
        apply_preset(deep_tiny, load_preset("efficientvla"), wrong)
    with pytest.raises(ValueError, match="unknown preset 'turbo'"):
        load_preset("turbo")
    assert {"baseline", "tokens-only", "cache-only", "layers-mlp", "efficientvla", "efficientvla-l28-t112",
            "fastv"} <= set(available_presets())


@pytest.mark.parametrize("depth, keep", [(32, 22), (16, 11), (8, 6), (2, 1), (1, 1)])
def test_depth_targets_scale_with_the_model(depth, keep):
    assert scaled_depth(22, 32, depth) == keep
    assert math.isclose(scaled_depth(28, 32, 32), 28)


@pytest.mark.parametrize("num_tokens, keep", [(256, 56), (64, 14), (16, 4), (2, 1)])
def test_token_targets_scale_with_the_model(num_tokens, keep):
    tokens = load_preset("efficientvla").tokens
    assert tokens.scaled_keep(num_tokens) == keep
    assert tokens.selector(num_tokens).keep == keep
    assert load_preset("efficientvla-l28-t112").tokens.scaled_keep(64) == 28
