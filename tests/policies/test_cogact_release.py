"""CogACT release checkpoints: round trip, corrupted files, the CogACT-Base manifest, DiT size, fused qkv."""

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from policies.cogact.key_rules import GROUPS, build_rules, check_rules_cover, cogact_state_dict
from policies.cogact.mapped_checkpoint import file_mappings, read_checkpoint, release_mapped_pages
from policies.cogact.release_layout import BASE_VLMS, VLART_CONFIG
from policies.cogact.release_reader import infer_dit_size, load_groups, release_config
from policies.cogact.release_writer import base_vlm_of, export_cogact_pt, export_release, release_meta
from policies.config import load_config
from policies.factory import build_policy
from policies.loading import export_model, load_policy
from policies.api.interface import Observation
from policies.policy import CogACTPolicy
from tests.conftest import CONFIGS, TINY

INSTRUCTION = "put the carrot on the plate"
DIT_PRESET_OVERRIDES = ["action_head.depth=null", "action_head.hidden_size=null", "action_head.num_heads=null"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """cogact-tiny (random weights, seeded) exported as a release directory."""
    return export_release(load_policy(TINY), tmp_path_factory.mktemp("release") / "cogact-tiny")


@pytest.fixture()
def release_copy(release, tmp_path):
    return shutil.copytree(release, tmp_path / "copy")


def weights_file(directory):
    return directory / "checkpoints" / "cogact-tiny.pt"


def rewrite(directory, change):
    """Load the release's .pt, let ``change`` edit ``{"model": groups}``, save it back."""
    data = torch.load(weights_file(directory), weights_only=True)
    change(data["model"])
    torch.save(data, weights_file(directory))


def predict(policy, frame):
    policy.reset()
    return policy.predict_action(Observation(frame, INSTRUCTION), seed=0)


# ---------------------------------------------------------------------------------------------------------- round trip


def test_release_round_trip_gives_bit_identical_actions(release, frame):
    source = load_policy(TINY)
    loaded = load_policy(release)
    expected, got = predict(source, frame), predict(loaded, frame)
    np.testing.assert_array_equal(got.actions, expected.actions)
    np.testing.assert_array_equal(got.normalized_actions, expected.normalized_actions)
    # The random CLS position row has no place in CogACT's layout: it was folded into cls_token, not lost.
    source_pos = source.vision.dino.embeddings.position_embeddings
    loaded_pos = loaded.vision.dino.embeddings.position_embeddings
    assert source_pos[0, 0].abs().sum() > 0 and torch.equal(loaded_pos[0, 0], torch.zeros_like(loaded_pos[0, 0]))
    assert torch.equal(loaded_pos[0, 1:], source_pos[0, 1:])
    assert torch.equal(loaded.vision.dino.embeddings.cls_token,
                       source.vision.dino.embeddings.cls_token + source_pos[:, :1])


def test_release_layout(release):
    assert sorted(p.name for p in release.iterdir()) == [
        "checkpoints", "config.json", "dataset_statistics.json", "tokenizer.json", "tokenizer_config.json",
        "vlart_config.yaml",
    ]
    data = torch.load(weights_file(release), weights_only=True)
    assert list(data) == ["model"] and list(data["model"]) == list(GROUPS)
    groups = data["model"]
    assert all(t.dtype == torch.float32 for g in groups.values() for t in g.values())
    vision, action = groups["vision_backbone"], groups["action_model"]
    assert vision["dino_featurizer.pos_embed"].shape == (1, 256, 32)
    assert vision["dino_featurizer.blocks.0.attn.qkv.weight"].shape == (96, 32)
    assert vision["siglip_featurizer.pos_embed"].shape == (1, 256, 32)
    assert vision["siglip_featurizer.attn_pool.kv.weight"].shape == (64, 32)
    assert not any("mask_token" in k for k in vision)
    assert torch.equal(action["net.history_embedder.linear.weight"], torch.zeros(32, 7))
    assert torch.equal(action["net.history_embedder.linear.bias"], torch.zeros(32))
    meta = json.loads((release / "config.json").read_text())
    assert meta["vla"]["base_vlm"] == "vlart-custom:cogact-tiny"  # not the base shape: vlart_config.yaml decides
    assert meta["future_action_window_size"] == 15 and meta["past_action_window_size"] == 0


def test_export_of_a_loaded_release_is_the_same_file(release, tmp_path):
    again = export_cogact_pt(load_policy(release), tmp_path / "again.pt")
    first = torch.load(weights_file(release), weights_only=True)["model"]
    second = torch.load(again, weights_only=True)["model"]
    assert {g: list(v) for g, v in first.items()} == {g: list(v) for g, v in second.items()}
    for group, tensors in first.items():
        for key, tensor in tensors.items():
            assert torch.equal(tensor, second[group][key]), f"{group}/{key}"


def test_exported_views_do_not_carry_their_whole_storage(release):
    pos = torch.load(weights_file(release), weights_only=True)["model"]["vision_backbone"]["dino_featurizer.pos_embed"]
    assert pos.untyped_storage().nbytes() == pos.numel() * 4  # the dropped CLS row is not in the file


def test_mask_token_is_the_only_zero_filled_key(release):
    policy = build_policy(release_config(release, {}), random_init=False)
    zeroed = load_groups(policy, read_checkpoint(weights_file(release)))
    assert zeroed == ["vision.dino.embeddings.mask_token"]
    assert torch.equal(policy.vision.dino.embeddings.mask_token, torch.zeros(1, 32))


def test_bfloat16_load_casts_all_but_the_action_head(release):
    full = load_policy(release)
    half = load_policy(release, overrides=["runtime.dtype=bfloat16"])
    assert half.language_model.llm.model.embed_tokens.weight.dtype == torch.bfloat16
    assert half.vision.siglip.encoder.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert half.action_head.positional_embedding.dtype == torch.float32
    assert torch.equal(half.projector.projector[0].weight, full.projector.projector[0].weight.bfloat16())


# ------------------------------------------------------------------------------------------------ corrupted releases


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["vision_backbone"].pop("dino_featurizer.blocks.0.attn.qkv.weight"),
         "missing keys: vision_backbone/dino_featurizer.blocks.0.attn.qkv.weight"),
        (lambda m: m["llm_backbone"].pop("llm.lm_head.weight"), "missing keys: llm_backbone/llm.lm_head.weight"),
        (lambda m: m["projector"].update({"projector.0.weight": torch.zeros(256, 65)}),
         "wrong shapes: projector/projector.0.weight has shape [256, 65], expected [256, 64]"),
        (lambda m: m["action_model"].update({"net.blocks.0.attn.qkv.weight": torch.zeros(32, 32)}),
         "action_model/net.blocks.0.attn.qkv.weight has shape [32, 32], expected [96, 32]"),
        (lambda m: m["action_model"].update({"net.extra.weight": torch.zeros(3)}),
         "unexpected keys: action_model/net.extra.weight"),
        (lambda m: m["vision_backbone"].update({"dino_featurizer.blocks.0.attn.q_norm.weight": torch.zeros(16)}),
         "unexpected keys: vision_backbone/dino_featurizer.blocks.0.attn.q_norm.weight"),
        (lambda m: m.update({"ema_diffusion": {}}), "unexpected keys: group 'ema_diffusion'"),
        (lambda m: m.pop("projector"), "missing keys: group 'projector'"),
    ],
)
def test_corrupted_checkpoint_is_an_error_naming_the_key(release_copy, change, message):
    rewrite(release_copy, change)
    with pytest.raises(ValueError) as error:
        load_policy(release_copy)
    assert message in str(error.value)
    assert str(weights_file(release_copy)) in str(error.value)


def test_unused_history_embedder_may_be_absent(release_copy, frame):
    def drop(model):
        del model["action_model"]["net.history_embedder.linear.weight"]
        del model["action_model"]["net.history_embedder.linear.bias"]

    rewrite(release_copy, drop)
    np.testing.assert_array_equal(predict(load_policy(release_copy), frame).actions,
                                  predict(load_policy(TINY), frame).actions)


def test_exactly_one_checkpoint(release_copy):
    shutil.copyfile(weights_file(release_copy), release_copy / "checkpoints" / "second.pt")
    with pytest.raises(ValueError, match="expected exactly one .pt checkpoint, found cogact-tiny.pt, second.pt"):
        load_policy(release_copy)


def test_not_a_checkpoint_file(release_copy):
    weights_file(release_copy).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        load_policy(release_copy)


def test_released_pages_are_read_again_from_the_file(release):
    path = weights_file(release)
    mapped = read_checkpoint(path)
    regions = file_mappings(path)
    if not regions:
        pytest.skip("no /proc/self/maps here")
    tensors = [t for group in mapped.values() for t in group.values()]
    before = [t.clone() for t in tensors]
    release_mapped_pages(tensors, regions)
    assert all(torch.equal(t, b) for t, b in zip(tensors, before))
    anonymous = torch.ones(100_000)  # not in the file mapping: must be left alone
    release_mapped_pages([anonymous], regions)
    assert torch.equal(anonymous, torch.ones(100_000))


def test_mapping_rules_cover_exactly_the_vlart_state_dict():
    with torch.device("meta"):
        model = CogACTPolicy(load_config(TINY))
    state = model.state_dict()
    check_rules_cover(build_rules(model.config), state)
    with pytest.raises(ValueError, match="vlart keys no rule fills: vision.dino.embeddings.mask_token"):
        check_rules_cover([r for r in build_rules(model.config) if r.kind != "fill_zeros"], state)
    extra = {**state, "action_head.new.weight": torch.empty(1, device="meta")}
    with pytest.raises(ValueError, match="vlart keys no rule fills: action_head.new.weight"):
        check_rules_cover(build_rules(model.config), extra)


# ----------------------------------------------------------------------- published releases: base VLM and DiT size


def tiny_shapes() -> dict:
    data = load_config(TINY).to_dict()
    data["llm"].pop("tokenizer")
    return {"vision": data["vision"], "llm": data["llm"]}


@pytest.fixture()
def published_like(tmp_path, monkeypatch):
    """A release without vlart_config.yaml, as published ones are: a made-up base VLM with the tiny towers and LLM
    (the real one is 7B) and a DiT-S head, so the base-VLM table and the DiT-size inference decide the shapes."""
    monkeypatch.setitem(BASE_VLMS, "test-tiny-vlm", tiny_shapes())
    source = build_policy(load_config(TINY, ["action_head.size=S", *DIT_PRESET_OVERRIDES]))
    directory = export_release(source, tmp_path / "CogACT-Test")
    (directory / VLART_CONFIG).unlink()
    meta = json.loads((directory / "config.json").read_text())
    meta["vla"]["base_vlm"] = "test-tiny-vlm"
    (directory / "config.json").write_text(json.dumps(meta))
    return source, directory


def test_published_release_needs_an_unnorm_key_and_loads_exactly(published_like, frame):
    source, directory = published_like
    with pytest.raises(ValueError, match="choose one of: bridge_orig, fractal20220817_data"):
        load_policy(directory)
    loaded = load_policy(directory, unnorm_key="bridge_orig")
    assert loaded.config.name == "CogACT-Test" and loaded.config.action_head.size == "S"
    assert loaded.config.action_head.hidden_size == 384 and loaded.config.action_head.depth == 6
    assert loaded.statistics.unnorm_key == "bridge_orig"
    np.testing.assert_array_equal(predict(loaded, frame).actions, predict(source, frame).actions)


def test_unknown_base_vlm_lists_the_known_one(published_like):
    _, directory = published_like
    meta = json.loads((directory / "config.json").read_text())
    meta["vla"]["base_vlm"] = "prism-clip-224px+13b"
    (directory / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"'prism-clip-224px\+13b' is not supported; known base VLMs: .*"
                                         r"prism-dinosiglip-224px\+7b"):
        load_policy(directory, unnorm_key="bridge_orig")


def test_published_release_without_tokenizer_files(published_like):
    _, directory = published_like
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (directory / name).unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        load_policy(directory, unnorm_key="bridge_orig")
    # --set llm.tokenizer points elsewhere
    policy = load_policy(directory, unnorm_key="bridge_orig", overrides=["llm.tokenizer=vlart-tiny"])
    assert policy.language_model.tokenizer is not None


def test_base_vlm_table_is_the_cogact_base_config():
    assert base_vlm_of(load_config(CONFIGS / "cogact-base.yaml")) == "prism-dinosiglip-224px+7b"
    assert base_vlm_of(load_config(CONFIGS / "cogact-small.yaml")) is None
    meta = release_meta(load_config(CONFIGS / "cogact-base.yaml"))
    assert meta["vla"]["base_vlm"] == "prism-dinosiglip-224px+7b" and meta["diffusion_model_type"] == "DiT-B"


@pytest.mark.parametrize("size, hidden, depth", [("S", 384, 6), ("B", 768, 12), ("L", 1024, 24)])
def test_dit_size_is_inferred_from_tensor_shapes(size, hidden, depth):
    config = load_config(CONFIGS / "cogact-base.yaml", [f"action_head.size={size}"])
    with torch.device("meta"):
        model = CogACTPolicy(config)
    action_model = cogact_state_dict(model.state_dict(), config)["action_model"]
    assert action_model["net.x_embedder.linear.weight"].shape == (hidden, 7)
    assert infer_dit_size(action_model) == size


def test_dit_size_that_matches_no_preset():
    config = load_config(TINY)
    with torch.device("meta"):
        model = CogACTPolicy(config)
    action_model = cogact_state_dict(model.state_dict(), config)["action_model"]
    with pytest.raises(ValueError, match="2 blocks of hidden size 32 match no DiT size"):
        infer_dit_size(action_model)
    with pytest.raises(ValueError, match="no net.x_embedder.linear.weight"):
        infer_dit_size({})


# ------------------------------------------------------------------------------------------------------ fused qkv


def timm_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, heads):
    """timm's ``Attention`` from the fused tensors: qkv output split as [q | k | v], each head-major."""
    b, n, d = x.shape
    q, k, v = F.linear(x, qkv_weight, qkv_bias).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v)
    return F.linear(out.transpose(1, 2).reshape(b, n, d), proj_weight, proj_bias)


@pytest.mark.parametrize("tower, prefix", [("dino", "dino_featurizer"), ("siglip", "siglip_featurizer")])
def test_fused_qkv_split_matches_timm_attention(release, tower, prefix):
    vision = torch.load(weights_file(release), weights_only=True)["model"]["vision_backbone"]
    loaded = load_policy(release)
    block = f"{prefix}.blocks.1.attn."
    if tower == "dino":
        attention = loaded.vision.dino.encoder.layer[1].attention
        out_proj = attention.o_proj
    else:
        attention = loaded.vision.siglip.encoder.layers[1].self_attn
        out_proj = attention.out_proj
    fused_w, fused_b = vision[f"{block}qkv.weight"], vision[f"{block}qkv.bias"]
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):  # rows [0:D] = q, [D:2D] = k, [2D:3D] = v
        assert torch.equal(getattr(attention, name).weight, fused_w[32 * i: 32 * (i + 1)])
        assert torch.equal(getattr(attention, name).bias, fused_b[32 * i: 32 * (i + 1)])
    assert torch.equal(out_proj.weight, vision[f"{block}proj.weight"])
    x = torch.randn(2, 261, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = timm_attention(x, fused_w, fused_b, vision[f"{block}proj.weight"], vision[f"{block}proj.bias"], 2)
        got = attention(x)[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_attention_pool_in_proj_is_q_then_kv(release):
    vision = torch.load(weights_file(release), weights_only=True)["model"]["vision_backbone"]
    head = load_policy(release).vision.siglip.head.attention
    pool = "siglip_featurizer.attn_pool."
    assert torch.equal(head.in_proj_weight, torch.cat([vision[f"{pool}q.weight"], vision[f"{pool}kv.weight"]]))
    assert torch.equal(head.in_proj_bias, torch.cat([vision[f"{pool}q.bias"], vision[f"{pool}kv.bias"]]))


# -------------------------------------------------------------------------------------- the CogACT-Base manifest


def reference_manifest() -> dict:
    """The CogACT-Base release layout, written from the reference (cogact_efficientvla.md section 2.3), not from
    the exporter. Per-block keys come from its one-layer-per-block listing. Shapes the listing leaves implicit are
    derived from its text: attn_pool.q/proj are [1152, 1152] like attention projections, its norm is the width,
    its MLP is the tower's (1152 -> 4304 -> 1152); the DiT is DiT-B, H = 768."""
    vision = {
        "dino_featurizer.cls_token": [1, 1, 1024],
        "dino_featurizer.reg_token": [1, 4, 1024],
        "dino_featurizer.pos_embed": [1, 256, 1024],
        "dino_featurizer.patch_embed.proj.weight": [1024, 3, 14, 14],
        "dino_featurizer.patch_embed.proj.bias": [1024],
    }
    for i in range(24):
        b = f"dino_featurizer.blocks.{i}."
        vision.update({
            b + "norm1.weight": [1024], b + "norm1.bias": [1024],
            b + "attn.qkv.weight": [3072, 1024], b + "attn.qkv.bias": [3072],
            b + "attn.proj.weight": [1024, 1024], b + "attn.proj.bias": [1024],
            b + "ls1.gamma": [1024],
            b + "norm2.weight": [1024], b + "norm2.bias": [1024],
            b + "mlp.fc1.weight": [4096, 1024], b + "mlp.fc1.bias": [4096],
            b + "mlp.fc2.weight": [1024, 4096], b + "mlp.fc2.bias": [1024],
            b + "ls2.gamma": [1024],
        })
    vision.update({"dino_featurizer.norm.weight": [1024], "dino_featurizer.norm.bias": [1024]})
    vision.update({
        "siglip_featurizer.pos_embed": [1, 256, 1152],
        "siglip_featurizer.patch_embed.proj.weight": [1152, 3, 14, 14],
        "siglip_featurizer.patch_embed.proj.bias": [1152],
    })
    for i in range(27):
        b = f"siglip_featurizer.blocks.{i}."
        vision.update({
            b + "norm1.weight": [1152], b + "norm1.bias": [1152],
            b + "attn.qkv.weight": [3456, 1152], b + "attn.qkv.bias": [3456],
            b + "attn.proj.weight": [1152, 1152], b + "attn.proj.bias": [1152],
            b + "norm2.weight": [1152], b + "norm2.bias": [1152],
            b + "mlp.fc1.weight": [4304, 1152], b + "mlp.fc1.bias": [4304],
            b + "mlp.fc2.weight": [1152, 4304], b + "mlp.fc2.bias": [1152],
        })
    pool = "siglip_featurizer.attn_pool."
    vision.update({
        "siglip_featurizer.norm.weight": [1152], "siglip_featurizer.norm.bias": [1152],
        pool + "latent": [1, 1, 1152],
        pool + "q.weight": [1152, 1152], pool + "q.bias": [1152],
        pool + "kv.weight": [2304, 1152], pool + "kv.bias": [2304],
        pool + "proj.weight": [1152, 1152], pool + "proj.bias": [1152],
        pool + "norm.weight": [1152], pool + "norm.bias": [1152],
        pool + "mlp.fc1.weight": [4304, 1152], pool + "mlp.fc1.bias": [4304],
        pool + "mlp.fc2.weight": [1152, 4304], pool + "mlp.fc2.bias": [1152],
    })
    projector = {
        "projector.0.weight": [8704, 2176], "projector.0.bias": [8704],
        "projector.2.weight": [4096, 8704], "projector.2.bias": [4096],
        "projector.4.weight": [4096, 4096], "projector.4.bias": [4096],
    }
    llm = {"llm.model.embed_tokens.weight": [32064, 4096]}
    for i in range(32):
        b = f"llm.model.layers.{i}."
        llm.update({b + f"self_attn.{p}_proj.weight": [4096, 4096] for p in ("q", "k", "v", "o")})
        llm.update({
            b + "mlp.gate_proj.weight": [11008, 4096],
            b + "mlp.up_proj.weight": [11008, 4096],
            b + "mlp.down_proj.weight": [4096, 11008],
            b + "input_layernorm.weight": [4096],
            b + "post_attention_layernorm.weight": [4096],
        })
    llm.update({"llm.model.norm.weight": [4096], "llm.lm_head.weight": [32064, 4096]})
    h = 768
    action = {
        "net.x_embedder.linear.weight": [h, 7], "net.x_embedder.linear.bias": [h],
        "net.history_embedder.linear.weight": [h, 7], "net.history_embedder.linear.bias": [h],
        "net.t_embedder.mlp.0.weight": [h, 256], "net.t_embedder.mlp.0.bias": [h],
        "net.t_embedder.mlp.2.weight": [h, h], "net.t_embedder.mlp.2.bias": [h],
        "net.z_embedder.linear.weight": [h, 4096], "net.z_embedder.linear.bias": [h],
        "net.z_embedder.uncondition": [1, 4096],
        "net.positional_embedding": [17, h],
        "net.final_layer.linear.weight": [7, h], "net.final_layer.linear.bias": [7],
    }
    for i in range(12):
        b = f"net.blocks.{i}."
        action.update({
            b + "attn.qkv.weight": [3 * h, h], b + "attn.qkv.bias": [3 * h],
            b + "attn.proj.weight": [h, h], b + "attn.proj.bias": [h],
            b + "mlp.fc1.weight": [4 * h, h], b + "mlp.fc1.bias": [4 * h],
            b + "mlp.fc2.weight": [h, 4 * h], b + "mlp.fc2.bias": [h],
        })
    return {"vision_backbone": vision, "projector": projector, "llm_backbone": llm, "action_model": action}


def test_cogact_base_manifest_matches_the_reference(tmp_path):
    out = export_model(CONFIGS / "cogact-base.yaml", "cogact-manifest", tmp_path / "manifest.json")
    written = json.loads(out.read_text())
    expected = reference_manifest()
    assert list(written["groups"]) == list(expected)
    for group, keys in expected.items():
        got = written["groups"][group]
        assert sorted(set(got) - set(keys)) == [], group
        assert sorted(set(keys) - set(got)) == [], group
        assert got == keys, group
    # vlart's 7.63B minus DINO's mask_token and CLS position row, plus the unused history embedder
    with torch.device("meta"):
        total = CogACTPolicy(load_config(CONFIGS / "cogact-base.yaml")).parameter_counts()["total"]
    assert sum(written["parameters"].values()) == total - 1024 - 1024 + 768 * 7 + 768
    assert round(written["parameters"]["action_model"] / 1e6, 2) == 88.99  # the reference's DiT-B count
    assert written["dtype"] == "float32" and written["model"] == "cogact-base"
