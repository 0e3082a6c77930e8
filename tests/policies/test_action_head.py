import math

import pytest
import torch

from policies.action_head import DiffusionTransformer
from policies.action_config import ActionHeadConfig


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    return DiffusionTransformer(ActionHeadConfig(size="custom", depth=2, hidden_size=32, num_heads=2), 64).eval()


def test_output_shape_and_dtype(dit):
    x = torch.randn(3, 16, 7)
    eps = dit(x, torch.tensor([90, 50, 0]), torch.randn(3, 64))
    assert eps.shape == (3, 16, 7) and eps.dtype == torch.float32


def test_timestep_embedding_is_cos_then_sin_of_original_step(dit):
    t = torch.tensor([90])
    emb = dit.t_frequencies(t)[0]
    i = 5
    freq = math.exp(-math.log(10000) * i / 128)
    assert emb.shape == (256,)
    assert emb[i].item() == pytest.approx(math.cos(90 * freq), abs=1e-5)
    assert emb[128 + i].item() == pytest.approx(math.sin(90 * freq), abs=1e-5)


def test_condition_token_is_timestep_embedding_plus_projected_cognition(dit):
    t = torch.tensor([40])
    cognition = torch.randn(1, 64)
    token = dit.embed_condition(t, cognition)
    t_emb = dit.t_embedder.linear_2(torch.nn.functional.silu(dit.t_embedder.linear_1(dit.t_frequencies(t))))
    expected = t_emb + cognition @ dit.z_embedder.linear.weight.T + dit.z_embedder.linear.bias
    assert token.shape == (1, 1, 32)
    assert torch.allclose(token[:, 0], expected, atol=1e-6)


def test_structure_matches_cogact(dit):
    assert dit.positional_embedding.shape == (17, 32)
    assert dit.z_embedder.uncondition.shape == (1, 64)
    block = dit.blocks[0]
    # LayerNorms without affine parameters, eps 1e-6; fused qkv; MLP ratio 4.
    assert not list(block.norm1.parameters()) and block.norm1.eps == 1e-6
    assert block.attn.qkv.weight.shape == (96, 32) and block.mlp.fc1.weight.shape == (128, 32)
    assert dit.final_layer.linear.weight.shape == (7, 32)


def test_block_uses_gelu_tanh_and_pre_norm(dit):
    block = dit.blocks[0]
    x = torch.randn(1, 17, 32)
    ln = torch.nn.functional.layer_norm
    h = x + block.attn(ln(x, (32,), eps=1e-6))
    hidden = torch.nn.functional.gelu(block.mlp.fc1(ln(h, (32,), eps=1e-6)), approximate="tanh")
    assert torch.allclose(block(x), h + block.mlp.fc2(hidden), atol=1e-6)


def test_attention_splits_qkv_head_major(dit):
    attn = dit.blocks[0].attn
    x = torch.randn(1, 5, 32)
    q, k, v = attn.qkv(x).split(32, dim=-1)
    heads = lambda t: t.view(1, 5, 2, 16).transpose(1, 2)  # noqa: E731
    weights = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(16), dim=-1)
    out = (weights @ heads(v)).transpose(1, 2).reshape(1, 5, 32)
    assert torch.allclose(attn(x), attn.proj(out), atol=1e-6)


def test_first_token_is_dropped_from_output(dit):
    x = torch.randn(1, 16, 7)
    t = torch.tensor([10])
    c = torch.randn(1, 64)
    tokens = torch.cat([dit.embed_condition(t, c), dit.x_embedder(x)], 1) + dit.positional_embedding
    for block in dit.blocks:
        tokens = block(tokens)
    assert torch.allclose(dit(x, t, c), dit.final_layer(tokens)[:, 1:], atol=1e-6)


@pytest.mark.parametrize("size, params", [("S", 12_473_735), ("B", 88_980_743), ("L", 307_756_039)])
def test_dit_sizes_match_cogact_parameter_counts(size, params):
    # CogACT's DiT-S/B/L with a 4096-d cognition feature (EfficientVLA Table 3: 13M, 89M, 308M; the unused
    # history_embedder, 8 * H parameters, is not built).
    with torch.device("meta"):
        model = DiffusionTransformer(ActionHeadConfig(size=size), 4096)
    assert sum(p.numel() for p in model.parameters()) == params


def test_committed_rows_are_marked_by_their_own_diffusion_time(dit):
    torch.manual_seed(0)
    x, t, cognition = torch.randn(2, 16, 7), torch.tensor([90, 40]), torch.randn(2, dit.z_embedder.linear.in_features)
    plain = dit(x, t, cognition)
    nothing = torch.zeros(2, 16, dtype=torch.bool)
    assert torch.equal(dit(x, t, cognition, nothing), plain)  # nothing committed: CogACT's DiT exactly
    committed = nothing.clone()
    committed[:, :3] = True
    marked = dit(x, t, cognition, committed)
    assert not torch.allclose(marked, plain)
    # The mark is t_emb(done) - t_emb(t) on the committed rows' tokens, nothing else.
    offset = dit.embed_timesteps(torch.tensor([-1, -1])) - dit.embed_timesteps(t)
    tokens = dit.embed_actions(x, t, committed)
    torch.testing.assert_close(tokens[:, :3], dit.x_embedder(x)[:, :3] + offset[:, None])
    torch.testing.assert_close(tokens[:, 3:], dit.x_embedder(x)[:, 3:])
