"""The vision(-language) front ends (policies/front_ends): shapes, instruction dependence, frozen parts, gradients,
FLOP counts, and their use inside the policy."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from policies.config import load_config
from policies.factory import build_policy, save_pretrained
from policies.flops import StepShape, count_flops
from policies.front_ends.base import FrontEnd
from policies.front_ends.registry import build_front_end
from policies.loading import load_policy
from runtime.core.yaml_config import ConfigError, from_dict
from policies.config import PolicyConfig
from tests.conftest import CONFIGS

KINDS = ["dinosiglip", "fiber", "bridgetower", "hicropl", "frozenllm"]
FUSION = ["fiber", "bridgetower", "hicropl"]
EXPECTED = {  # (N, D, P) of the tiny configs at 224 px
    "dinosiglip": (256, 64, 64),
    "fiber": (49, 64, 128),
    "bridgetower": (197, 64, 128),
    "hicropl": (196, 64, 64),
    "frozenllm": (256, 64, 64),
}
TEXTS = ["put the carrot on the plate", "open the top drawer"]


def tiny_config(kind: str, overrides: list[str] | None = None):
    name = "cogact-tiny.yaml" if kind == "dinosiglip" else f"cogact-tiny-{kind}.yaml"
    return load_config(CONFIGS / name, overrides)


def build(kind: str, overrides: list[str] | None = None, seed: int = 0):
    """A tiny policy of that front end (seeded weights, tokenizers attached), in eval mode."""
    config = tiny_config(kind, overrides)
    config.runtime.init_seed = seed
    return build_policy(config)


@pytest.fixture(scope="module")
def policies():
    return {kind: build(kind) for kind in KINDS}


@pytest.fixture()
def image() -> np.ndarray:
    return np.random.default_rng(4).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)


def encode(front_end: FrontEnd, images: list[np.ndarray], texts: list[str], grad: bool = False):
    pixels = front_end.preprocess(images)
    text = front_end.tokenize(texts) if front_end.uses_instruction else None
    with torch.enable_grad() if grad else torch.no_grad():
        return front_end.encode(pixels, text)


@pytest.mark.parametrize("kind", KINDS)
def test_output_shapes_for_a_224_image(policies, image, kind):
    front_end = policies[kind].vision
    n, d, p = EXPECTED[kind]
    assert (front_end.num_tokens, front_end.token_dim, front_end.pooled_dim, front_end.image_size) == (n, d, p, 224)
    assert front_end.uses_instruction == (kind in FUSION)
    out = encode(front_end, [image], TEXTS[:1])
    assert out.tokens.shape == (1, n, d) and out.tokens.dtype == torch.float32
    assert out.pooled.shape == (1, p) and out.mask is None
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    with torch.no_grad():
        assert torch.equal(front_end(front_end.preprocess([image]), front_end.tokenize(TEXTS[:1])), out.tokens)


@pytest.mark.parametrize("kind", KINDS)
def test_a_padded_batch_matches_single_examples(policies, kind):
    """Instructions of different lengths are padded in a batch; padding must not change any example's tokens."""
    front_end = policies[kind].vision
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8) for _ in range(2)]
    texts = ["pick coke can", "move the green cube near the yellow cube on the table"]
    batch = encode(front_end, images, texts)
    for i in range(2):
        single = encode(front_end, images[i : i + 1], texts[i : i + 1])
        assert torch.allclose(batch.tokens[i], single.tokens[0], atol=1e-5)
        assert torch.allclose(batch.pooled[i], single.pooled[0], atol=1e-5)


@pytest.mark.parametrize("kind", FUSION)
def test_fusion_tokens_change_with_the_instruction(policies, image, kind):
    front_end = copy.deepcopy(policies[kind].vision)
    if kind == "fiber":
        with torch.no_grad():
            for gate in front_end.gates():
                gate.fill_(0.5)
    first, second = (encode(front_end, [image], [text]).tokens for text in TEXTS)
    assert (first - second).abs().max() > 1e-6


@pytest.mark.parametrize("kind", ["dinosiglip", "frozenllm"])
def test_vision_only_front_ends_ignore_the_instruction(policies, image, kind):
    front_end = policies[kind].vision
    assert front_end.tokenize(TEXTS) is None


def test_fiber_with_zero_gates_equals_the_unfused_backbones(policies, image):
    front_end = policies["fiber"].vision
    assert all(float(gate.detach()) == 0.0 for gate in front_end.gates()) and len(front_end.gates()) == 4
    first, second = (encode(front_end, [image], [text]).tokens for text in TEXTS)
    assert torch.equal(first, second)
    pixels = front_end.preprocess([image])["pixel_values"]
    text = front_end.tokenize(TEXTS[:1])
    with torch.no_grad():
        image_stream, text_stream = front_end.streams(pixels, text)
        embeddings, dims = front_end.swin.embeddings(pixels)
        swin = front_end.swin.encoder(embeddings, dims).last_hidden_state
        roberta = front_end.text(**text).last_hidden_state
    assert image_stream.shape == (1, 49, 128)
    assert torch.equal(image_stream, swin)  # bit for bit: the fused path adds exactly 0
    assert torch.equal(text_stream, roberta)


def test_fiber_fuses_the_top_blocks_and_layers():
    config = tiny_config("fiber")
    front_end = build_front_end(config)
    assert front_end.fused_blocks == [(2, 1), (3, 0)]  # the last 2 of the 1-1-2-1 Swin blocks
    assert front_end.first_fused_text == 0  # both RoBERTa layers
    widths = [(m.attention.query.in_features, m.attention.key.in_features) for m in front_end.image_fusion]
    assert widths == [(64, 64), (128, 64)]  # stage width queries, text keys
    assert [m.attention.key.in_features for m in front_end.text_fusion] == [64, 128]


def test_hicropl_published_flow_does_not_depend_on_the_instruction(image):
    front_end = build("hicropl", ["vision.hicropl.task_aware=false"]).vision
    first, second = (encode(front_end, [image], [text]) for text in TEXTS)
    assert torch.equal(first.tokens, second.tokens)
    assert not torch.equal(first.pooled, second.pooled)  # the text feature still reads the instruction


FROZEN = {  # parameter-name prefixes the method freezes
    "dinosiglip": (),
    "fiber": (),
    "bridgetower": (),
    "hicropl": ("clip.",),
    "frozenllm": ("block.", "norm."),
}


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_parameters_are_the_methods(policies, kind):
    named = dict(policies[kind].vision.named_parameters())
    frozen = {name for name, p in named.items() if not p.requires_grad}
    assert frozen == {name for name in named if name.startswith(FROZEN[kind])}
    assert len(frozen) < len(named)
    if kind == "hicropl":
        trainable = {name.split(".")[0] for name in named if name not in frozen}
        assert trainable == {"text_prompts", "visual_prompts", "text_proxies", "visual_proxies", "text_to_vision",
                             "vision_to_text"}


@pytest.mark.parametrize("kind", KINDS)
def test_one_optimizer_step_changes_only_trainable_parameters(kind, image):
    torch.manual_seed(0)
    front_end = build(kind).vision
    before = {name: p.detach().clone() for name, p in front_end.named_parameters()}
    optimizer = torch.optim.SGD(front_end.parameters(), lr=0.1)  # every parameter offered, frozen ones too
    out = encode(front_end, [image], TEXTS[:1], grad=True)
    (out.tokens.square().mean() + out.pooled.square().mean()).backward()
    optimizer.step()
    changed = set()
    for name, p in front_end.named_parameters():
        if not torch.equal(p.detach(), before[name]):
            changed.add(name)
        if not p.requires_grad:
            assert p.grad is None and name not in changed, name
        elif p.grad is not None and 0.1 * p.grad.abs().max() > 1e-6 * before[name].abs().max().clamp(min=1.0):
            assert name in changed, name  # (smaller updates vanish in float32 rounding)
    assert changed and all(dict(front_end.named_parameters())[name].requires_grad for name in changed)
    if kind == "fiber":
        assert {f"image_fusion.{j}.alpha" for j in range(2)} <= changed  # zero gates still learn
    if kind == "frozenllm":
        assert {"in_proj.weight", "out_proj.weight"} <= changed


def test_hicropl_mapper_proxies_and_prompts_receive_gradients(image):
    front_end = build("hicropl").vision
    out = encode(front_end, [image], TEXTS[:1], grad=True)
    (out.tokens.square().mean() + out.pooled.square().mean()).backward()
    grads = {name: p.grad for name, p in front_end.named_parameters()}
    for name, grad in grads.items():
        if name.startswith("clip."):
            assert grad is None, name
        else:
            assert grad is not None and grad.abs().max() > 0, name
    # the visual tokens alone reach the text -> vision mapper and the text proxies (task-aware flow)
    front_end.zero_grad(set_to_none=True)
    encode(front_end, [image], TEXTS[:1], grad=True).tokens.square().mean().backward()
    for prefix in ("text_to_vision.", "text_proxies.0.query", "text_proxies.1.attention.", "visual_prompts"):
        assert any(name.startswith(prefix) and p.grad is not None and p.grad.abs().max() > 0
                   for name, p in front_end.named_parameters()), prefix


def test_frozen_llm_block_is_a_copy_of_the_llm_layer_without_rotary_or_causal_mask(policies):
    policy = policies["frozenllm"]
    front_end = policy.vision
    layer = policy.language_model.llm.model.layers[-1]
    for name, tensor in layer.state_dict().items():
        assert torch.equal(front_end.block.state_dict()[name], tensor), name
    assert front_end.block.self_attn.q_proj.weight.data_ptr() != layer.self_attn.q_proj.weight.data_ptr()
    assert torch.equal(front_end.norm.weight, torch.ones_like(front_end.norm.weight))
    hidden = torch.randn(1, 6, 64, generator=torch.Generator().manual_seed(0))

    def block(x):
        cos = torch.ones(1, x.shape[1], front_end.head_dim)
        with torch.no_grad():
            return front_end.block(x, attention_mask=None, position_embeddings=(cos, torch.zeros_like(cos)),
                                   is_causal=False)

    out = block(hidden)
    perturbed = hidden.clone()
    perturbed[:, -1] += 1.0
    assert not torch.allclose(block(perturbed)[:, 0], out[:, 0])  # the first token sees the last: no causal mask
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    assert torch.allclose(block(hidden[:, order]), out[:, order], atol=1e-6)  # no position information
    random = build("frozenllm", ["vision.frozenllm.llm_layer=null"])
    assert not torch.equal(random.vision.block.mlp.up_proj.weight,
                           random.language_model.llm.model.layers[-1].mlp.up_proj.weight)


def test_frozen_llm_single_tower(image):
    policy = build("frozenllm", ["vision.frozenllm.tower=siglip"])
    front_end = policy.vision
    assert not hasattr(front_end.vit, "dino") and front_end.token_dim == 32
    assert encode(front_end, [image], TEXTS[:1]).tokens.shape == (1, 256, 32)
    assert policy.projector.projector[0].in_features == 32


@pytest.mark.parametrize("kind", KINDS)
def test_flop_count_matches_torch_flop_counter(policies, image, kind):
    """Linear and convolution FLOPs against torch's counter (attention matmuls, which torch counts only when they are
    eager bmm, apart)."""
    front_end = policies[kind].vision
    pixels = front_end.preprocess([image])
    text = front_end.tokenize(TEXTS[:1]) if front_end.uses_instruction else None
    tokens = len(front_end.tokenizer(TEXTS[0]).input_ids) if front_end.uses_instruction else 0
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        front_end.encode(pixels, text)
    counts = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    linear = sum(flops for op, flops in counts.items() if "bmm" not in op)
    ours = front_end.flop_count(tokens)
    assert ours["executed"] == pytest.approx(linear, rel=1e-6)
    if kind == "bridgetower":  # eager attention in the text and cross-modal layers: counted by torch as bmm
        assert 0 < counts["aten.bmm"] < ours["attention"]
    assert ours["paper"] >= ours["executed"] and ours["attention"] > 0


@pytest.mark.parametrize("kind", ["fiber", "hicropl", "frozenllm"])
def test_policy_flops_match_torch_flop_counter(policies, kind):
    """The whole step, as tests/runtime/app/test_flops.py checks it for the default front end (these use sdpa only)."""
    policy = policies[kind]
    frame = np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    text = "put carrot on plate"
    llm_tokens = int(policy.language_model.tokenize([text]).lengths[0])
    instruction = len(policy.vision.tokenizer(text).input_ids) if policy.vision.uses_instruction else 0
    with FlopCounterMode(display=False) as counter:
        policy.sample_normalized([frame], [text], seed=0)
    ours = count_flops(policy, StepShape(text_tokens=llm_tokens, instruction_tokens=instruction))
    assert ours["executed_linear_gflops"] == pytest.approx(counter.get_total_flops() * 1e-9, rel=0.01)
    assert ours["visual_tokens"] == EXPECTED[kind][0] and ours["front_end"] == kind


def test_cogact_base_vision_flops_are_unchanged():
    from policies.policy import CogACTPolicy

    with torch.device("meta"):
        policy = CogACTPolicy(load_config(CONFIGS / "cogact-base.yaml"))
    flops = count_flops(policy)
    assert flops["visual_tokens"] == 256 and flops["instruction_tokens"] is None
    assert flops["gflops"]["vision"] + flops["gflops"]["projector"] == pytest.approx(405.5, abs=0.5)


def test_token_selection_is_skipped_when_the_front_end_has_fewer_tokens(policies):
    from policies.acceleration.token_selection import TaskAwareSelector
    from policies.presets import apply_preset, load_preset

    policy = copy.deepcopy(policies["fiber"])
    baseline = count_flops(policy)
    apply_preset(copy.deepcopy(policy), load_preset("tokens-only"))
    assert load_preset("tokens-only").tokens.scaled_keep(policy.vision.num_tokens) == 11  # 56/256 of FIBER's 49
    policy.language_model.token_selector = TaskAwareSelector(keep=56, layer=1)
    assert policy.language_model.token_selector.keep == 56 > policy.vision.num_tokens
    frame = np.random.default_rng(1).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    policy.language_model.last_kept_visual = None
    selected = policy.sample_normalized([frame], ["pick coke can"], seed=3)
    assert policy.language_model.last_kept_visual is None  # 49 <= 56: nothing to select
    plain = policies["fiber"].sample_normalized([frame], ["pick coke can"], seed=3)
    assert torch.allclose(selected, plain, atol=1e-5)
    assert count_flops(policy)["gflops"]["llm"] == baseline["gflops"]["llm"]


def test_language_model_ignores_masked_visual_tokens(policies):
    language_model = policies["dinosiglip"].language_model
    prompt = language_model.tokenize(["pick coke can"])
    visual = torch.randn(1, 10, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, 10, dtype=torch.long)
    mask[0, 3:5] = 0
    changed = visual.clone()
    changed[0, 3:5] = 100.0
    with torch.no_grad():
        assert torch.allclose(language_model(visual, prompt, mask), language_model(changed, prompt, mask), atol=1e-5)
        assert not torch.allclose(language_model(visual, prompt), language_model(changed, prompt), atol=1e-3)
        assert torch.equal(language_model(visual, prompt, torch.ones_like(mask)), language_model(visual, prompt))


@pytest.mark.parametrize("kind", FUSION + ["frozenllm"])
def test_checkpoint_round_trip(policies, kind, tmp_path, frame):
    policy = policies[kind]
    save_pretrained(policy, tmp_path)
    assert (tmp_path / "vision_tokenizer").is_dir() == (kind in FUSION)
    loaded = load_policy(tmp_path)
    assert loaded.config.vision.type == kind
    if kind in FUSION:
        assert getattr(loaded.config.vision, kind).text.tokenizer == "vision_tokenizer"
    assert torch.equal(loaded.sample_normalized([frame], ["close the drawer"], seed=2),
                       policy.sample_normalized([frame], ["close the drawer"], seed=2))


@pytest.mark.parametrize(
    "vision, message",
    [
        ({"type": "clip"}, "vision.type must be one of"),
        ({"fiber": {}}, "vision.fiber is set but vision.type is 'dinosiglip'"),
        ({"type": "fiber", "fiber": {"swim": {}}}, r"unknown config key\(s\) vision.fiber.swim"),
        ({"type": "fiber", "fiber": {"num_fusion_blocks": 30}}, "num_fusion_blocks=30 exceeds"),
        ({"type": "fiber", "image_size": 160, "fiber": {"swin": {"window_size": 7}}},
         "window_size=7 must be between 1 and the last stage's grid, 5"),
        ({"type": "bridgetower", "bridgetower": {"vision": {"depth": 6}}}, "must be equal"),
        ({"type": "hicropl", "hicropl": {"cross_layer": 12}}, "cross_layer must be between"),
        ({"type": "frozenllm", "frozenllm": {"llm_layer": 40}}, "llm_layer=40 is not a layer"),
        ({"type": "frozenllm", "frozenllm": {"hidden_size": 128}}, "hidden_size must be the LLM's"),
    ],
)
def test_front_end_config_errors(vision, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(PolicyConfig, {"vision": vision})


def test_existing_configs_default_to_dinosiglip():
    for name in ("cogact-tiny", "cogact-small", "cogact-base"):
        config = load_config(CONFIGS / f"{name}.yaml")
        assert config.vision.type == "dinosiglip" and config.vision.fiber is None
    assert from_dict(PolicyConfig, {"vision": {"type": "fiber"}}).vision.fiber.swin.depths == [2, 2, 18, 2]
