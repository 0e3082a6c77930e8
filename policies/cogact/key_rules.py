"""CogACT's checkpoint keys <-> vlart's ``CogACTPolicy.state_dict()`` keys, and the conversions between them.

Key mapping (CogACT name <-> vlart ``CogACTPolicy.state_dict()`` name), one ``Rule`` per tensor group:

- timm fused ``attn.qkv`` [3D, D] / [3D] <-> transformers ``q_proj``, ``k_proj``, ``v_proj`` (rows [0:D], [D:2D],
  [2D:3D]); DINO: ``attention.{q,k,v,o}_proj`` (``o_proj`` <- ``attn.proj``); SigLIP: ``self_attn.{q,k,v,out}_proj``.
- ``ls1.gamma`` / ``ls2.gamma`` <-> ``layer_scale1.lambda1`` / ``layer_scale2.lambda1``; ``norm1``/``norm2`` <->
  DINO ``norm1``/``norm2``, SigLIP ``layer_norm1``/``layer_norm2``; ``mlp.fc1``/``mlp.fc2`` unchanged.
- DINO ``cls_token``, ``reg_token`` <-> ``embeddings.cls_token``, ``embeddings.register_tokens``; ``pos_embed``
  [1, N, D] <-> ``embeddings.position_embeddings`` [1, N + 1, D] whose row 0 (the CLS position, which timm's
  ``no_embed_class`` layout does not have) is zero after loading. On export row 0 is folded into ``cls_token``
  (the CLS token enters the network as ``cls_token + row 0`` either way), so any vlart model exports exactly.
- DINO ``patch_embed.proj`` <-> ``embeddings.patch_embeddings.projection``; ``norm`` <-> ``layernorm``;
  ``embeddings.mask_token`` has no CogACT key (used only for masked-image training): filled with zeros, named.
- SigLIP ``pos_embed`` [1, N, D] <-> ``embeddings.position_embedding.weight`` [N, D]; ``patch_embed.proj`` <->
  ``embeddings.patch_embedding``; ``norm`` <-> ``post_layernorm``; ``attn_pool.latent`` <-> ``head.probe``;
  ``attn_pool.q`` + ``attn_pool.kv`` <-> ``head.attention.in_proj_{weight,bias}`` (= cat(q, kv));
  ``attn_pool.proj`` <-> ``head.attention.out_proj``; ``attn_pool.norm`` <-> ``head.layernorm``;
  ``attn_pool.mlp.fc1/fc2`` <-> ``head.mlp.fc1/fc2``.
- ``projector.N`` <-> ``projector.projector.N``; ``llm.*`` <-> ``language_model.llm.*``.
- DiT ``net.*`` <-> ``action_head.*`` with ``t_embedder.mlp.0``/``mlp.2`` <-> ``t_embedder.linear_1``/``linear_2``;
  ``net.history_embedder.linear.{weight,bias}`` ([H, 7], [H]) is unused by CogACT: skipped by name on load,
  written as zeros on export.

Every key is accounted for: a checkpoint key that no rule consumes or skips, a layout key the checkpoint lacks, a
wrong shape, or a vlart key no rule fills is an error naming the keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from policies.config import PolicyConfig
from policies.policy import CogACTPolicy

VISION, PROJECTOR, LLM, ACTION = "vision_backbone", "projector", "llm_backbone", "action_model"
GROUPS = (VISION, PROJECTOR, LLM, ACTION)
_LIST_LIMIT = 20  # keys named per category in an error; the rest are counted


def describe_keys(items: list[tuple[str, list[str]]]) -> str:
    """``[(label, keys), ...]`` -> ``"label: k1, k2 ... and N more; ..."`` for error messages (labels without keys
    left out)."""
    parts = []
    for label, keys in items:
        if keys:
            more = f" ... and {len(keys) - _LIST_LIMIT} more" if len(keys) > _LIST_LIMIT else ""
            parts.append(f"{label}: {', '.join(keys[:_LIST_LIMIT])}{more}")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class Rule:
    """How CogACT keys (inside ``group``) and vlart keys correspond.

    ``kind``: ``copy`` (1 <-> 1, same shape), ``qkv`` (fused [3D, ...] <-> q, k, v [D, ...]), ``dino_tokens``
    (cls, reg, pos [1, N, D] <-> cls, registers, positions [1, N + 1, D]), ``siglip_pos`` ([1, N, D] <-> [N, D]),
    ``pool_in_proj`` (q [D, ...], kv [2D, ...] <-> in_proj [3D, ...]), ``fill_zeros`` (no CogACT key; vlart key
    zeroed), ``unused`` (CogACT keys vlart has no use for; zeros shaped like the ``like`` vlart keys on export).
    """

    group: str
    kind: str
    cogact: tuple[str, ...]
    vlart: tuple[str, ...]
    like: tuple[str, ...] = ()


def _copy(group: str, cogact: str, vlart: str) -> Rule:
    return Rule(group, "copy", (cogact,), (vlart,))


def _affine(group: str, cogact: str, vlart: str) -> list[Rule]:
    """A Linear / LayerNorm / Conv: ``.weight`` and ``.bias`` under both names."""
    return [_copy(group, f"{cogact}.{p}", f"{vlart}.{p}") for p in ("weight", "bias")]


def _qkv(group: str, cogact: str, vlart_attention: str, names: tuple[str, str, str]) -> list[Rule]:
    return [Rule(group, "qkv", (f"{cogact}.{p}",), tuple(f"{vlart_attention}{n}.{p}" for n in names))
            for p in ("weight", "bias")]


def dino_rules(config: PolicyConfig) -> list[Rule]:
    """timm ``vit_*_reg4_dinov2`` (``dino_featurizer.*``) <-> transformers Dinov2WithRegisters (``vision.dino.*``),
    in timm's state-dict order."""
    c, v = "dino_featurizer.", "vision.dino."
    rules = [
        Rule(VISION, "dino_tokens", (f"{c}cls_token", f"{c}reg_token", f"{c}pos_embed"),
             (f"{v}embeddings.cls_token", f"{v}embeddings.register_tokens", f"{v}embeddings.position_embeddings")),
        *_affine(VISION, f"{c}patch_embed.proj", f"{v}embeddings.patch_embeddings.projection"),
        Rule(VISION, "fill_zeros", (), (f"{v}embeddings.mask_token",)),
    ]
    for i in range(config.vision.dino.depth):
        cb, vb = f"{c}blocks.{i}.", f"{v}encoder.layer.{i}."
        rules += _affine(VISION, f"{cb}norm1", f"{vb}norm1")
        rules += _qkv(VISION, f"{cb}attn.qkv", f"{vb}attention.", ("q_proj", "k_proj", "v_proj"))
        rules += _affine(VISION, f"{cb}attn.proj", f"{vb}attention.o_proj")
        rules.append(_copy(VISION, f"{cb}ls1.gamma", f"{vb}layer_scale1.lambda1"))
        rules += _affine(VISION, f"{cb}norm2", f"{vb}norm2")
        rules += _affine(VISION, f"{cb}mlp.fc1", f"{vb}mlp.fc1")
        rules += _affine(VISION, f"{cb}mlp.fc2", f"{vb}mlp.fc2")
        rules.append(_copy(VISION, f"{cb}ls2.gamma", f"{vb}layer_scale2.lambda1"))
    return rules + _affine(VISION, f"{c}norm", f"{v}layernorm")


def siglip_rules(config: PolicyConfig) -> list[Rule]:
    """timm ``vit_so400m_patch14_siglip_224`` (``siglip_featurizer.*``) <-> transformers SiglipVisionModel
    (``vision.siglip.*``), in timm's state-dict order."""
    c, v = "siglip_featurizer.", "vision.siglip."
    rules = [
        Rule(VISION, "siglip_pos", (f"{c}pos_embed",), (f"{v}embeddings.position_embedding.weight",)),
        *_affine(VISION, f"{c}patch_embed.proj", f"{v}embeddings.patch_embedding"),
    ]
    for i in range(config.vision.siglip.depth):
        cb, vb = f"{c}blocks.{i}.", f"{v}encoder.layers.{i}."
        rules += _affine(VISION, f"{cb}norm1", f"{vb}layer_norm1")
        rules += _qkv(VISION, f"{cb}attn.qkv", f"{vb}self_attn.", ("q_proj", "k_proj", "v_proj"))
        rules += _affine(VISION, f"{cb}attn.proj", f"{vb}self_attn.out_proj")
        rules += _affine(VISION, f"{cb}norm2", f"{vb}layer_norm2")
        rules += _affine(VISION, f"{cb}mlp.fc1", f"{vb}mlp.fc1")
        rules += _affine(VISION, f"{cb}mlp.fc2", f"{vb}mlp.fc2")
    rules += _affine(VISION, f"{c}norm", f"{v}post_layernorm")
    # The attention-pool head: unused by CogACT (and by vlart), but loaded so every key is accounted for.
    pool, head = f"{c}attn_pool.", f"{v}head."
    rules.append(_copy(VISION, f"{pool}latent", f"{head}probe"))
    rules += [Rule(VISION, "pool_in_proj", (f"{pool}q.{p}", f"{pool}kv.{p}"), (f"{head}attention.in_proj_{p}",))
              for p in ("weight", "bias")]
    rules += _affine(VISION, f"{pool}proj", f"{head}attention.out_proj")
    rules += _affine(VISION, f"{pool}norm", f"{head}layernorm")
    rules += _affine(VISION, f"{pool}mlp.fc1", f"{head}mlp.fc1")
    return rules + _affine(VISION, f"{pool}mlp.fc2", f"{head}mlp.fc2")


def projector_rules(config: PolicyConfig) -> list[Rule]:
    """Prismatic's ``projector.{0,2,4}`` (the Linear layers of the inner Sequential) <-> ``projector.projector.*``."""
    return [rule for n in (0, 2, 4) for rule in _affine(PROJECTOR, f"projector.{n}", f"projector.projector.{n}")]


def llm_rules(config: PolicyConfig) -> list[Rule]:
    """HF LLaMA under the attribute ``llm`` <-> ``language_model.llm.*`` (same names below the prefix)."""
    names = ["model.embed_tokens.weight"]
    for i in range(config.llm.num_layers):
        layer = f"model.layers.{i}."
        names += [f"{layer}self_attn.{p}_proj.weight" for p in ("q", "k", "v", "o")]
        names += [f"{layer}mlp.{p}_proj.weight" for p in ("gate", "up", "down")]
        names += [f"{layer}input_layernorm.weight", f"{layer}post_attention_layernorm.weight"]
    names += ["model.norm.weight", "lm_head.weight"]
    return [_copy(LLM, f"llm.{name}", f"language_model.llm.{name}") for name in names]


def dit_rules(config: PolicyConfig) -> list[Rule]:
    """CogACT's ``ActionModel.net`` (``net.*``) <-> ``action_head.*``. The DiT's LayerNorms have no parameters."""
    c, v = "net.", "action_head."
    rules = [
        _copy(ACTION, f"{c}positional_embedding", f"{v}positional_embedding"),
        *_affine(ACTION, f"{c}x_embedder.linear", f"{v}x_embedder.linear"),
        # History actions are unused (CogACT's past window is 0): skipped by name, exported as zeros [H, 7], [H].
        Rule(ACTION, "unused", (f"{c}history_embedder.linear.weight", f"{c}history_embedder.linear.bias"), (),
             like=(f"{v}x_embedder.linear.weight", f"{v}x_embedder.linear.bias")),
        *_affine(ACTION, f"{c}t_embedder.mlp.0", f"{v}t_embedder.linear_1"),
        *_affine(ACTION, f"{c}t_embedder.mlp.2", f"{v}t_embedder.linear_2"),
        _copy(ACTION, f"{c}z_embedder.uncondition", f"{v}z_embedder.uncondition"),
        *_affine(ACTION, f"{c}z_embedder.linear", f"{v}z_embedder.linear"),
    ]
    for i in range(config.action_head.depth):
        for part in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
            rules += _affine(ACTION, f"{c}blocks.{i}.{part}", f"{v}blocks.{i}.{part}")
    return rules + _affine(ACTION, f"{c}final_layer.linear", f"{v}final_layer.linear")


def build_rules(config: PolicyConfig) -> list[Rule]:
    """Every rule, group by group, in CogACT's order."""
    if config.vision.type != "dinosiglip":
        raise ValueError(f"vision.type={config.vision.type}: CogACT's release layout holds a DINOv2+SigLIP vision "
                         "backbone only; use --format safetensors for other front ends")
    return dino_rules(config) + siglip_rules(config) + projector_rules(config) + llm_rules(config) + dit_rules(config)


# --------------------------------------------------------------------------------------------------------------------
# Tensor conversions


def to_vlart(rule: Rule, sources: list[torch.Tensor]) -> list[torch.Tensor]:
    """CogACT tensors of one rule -> the vlart tensors, in ``rule.vlart`` order (views where possible, so loading
    from a memory-mapped checkpoint copies each tensor once, into the model)."""
    kind = rule.kind
    if kind == "copy":
        return sources
    if kind == "qkv":
        return list(sources[0].chunk(3, dim=0))  # timm splits the fused output as [q | k | v]
    if kind == "dino_tokens":
        cls, reg, pos = sources
        # transformers adds position row 0 to the CLS token; timm adds nothing, so row 0 is zero.
        return [cls, reg, torch.cat([pos.new_zeros(1, 1, pos.shape[-1]), pos], dim=1)]
    if kind == "siglip_pos":
        return [sources[0][0]]
    if kind == "pool_in_proj":
        return [torch.cat(sources, dim=0)]  # kv is [k | v], so cat(q, kv) is MultiheadAttention's [q | k | v]
    raise ValueError(f"rule kind {kind!r} has no tensors to load")


def to_cogact(rule: Rule, sources: list[torch.Tensor], like: list[torch.Tensor]) -> list[torch.Tensor]:
    """vlart tensors of one rule (``like``: the tensors named by ``rule.like``) -> CogACT tensors, in
    ``rule.cogact`` order."""
    kind = rule.kind
    if kind == "copy":
        return sources
    if kind == "qkv":
        return [torch.cat(sources, dim=0)]
    if kind == "dino_tokens":
        cls, reg, pos = sources
        # Fold the CLS position row into the token: the network sees cls + row 0 before and after the round trip.
        return [cls + pos[:, :1], reg, pos[:, 1:]]
    if kind == "siglip_pos":
        return [sources[0].unsqueeze(0)]
    if kind == "pool_in_proj":
        n = sources[0].shape[0] // 3
        return [sources[0][:n], sources[0][n:]]
    if kind == "fill_zeros":
        return []
    if kind == "unused":
        return [torch.zeros_like(t) for t in like]
    raise ValueError(f"unknown rule kind {kind!r}")


def _standalone(tensor: torch.Tensor) -> torch.Tensor:
    """float32, contiguous and owning exactly its bytes: ``torch.save`` writes a view's whole storage (a sliced
    position table would carry its dropped row), so views are copied; whole float32 tensors are not."""
    tensor = tensor.detach().float().contiguous()
    if tensor.device.type == "meta":
        return tensor
    if tensor.storage_offset() or tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        tensor = tensor.clone()
    return tensor


def check_rules_cover(rules: list[Rule], state: Mapping[str, torch.Tensor]) -> None:
    """The rules name exactly the keys of vlart's state dict (each once); otherwise an error naming the keys."""
    named = [key for rule in rules for key in rule.vlart]
    duplicates = sorted({key for key in named if named.count(key) > 1}) if len(named) != len(set(named)) else []
    unknown = sorted(set(named) - set(state))
    uncovered = sorted(set(state) - set(named))
    if duplicates or unknown or uncovered:
        raise ValueError(
            "CogACT key mapping does not match the vlart model: "
            + describe_keys([("vlart keys no rule fills", uncovered), ("rule keys the model does not have", unknown),
                         ("vlart keys named twice", duplicates)])
        )


def cogact_state_dict(state: Mapping[str, torch.Tensor], config: PolicyConfig) -> dict[str, dict[str, torch.Tensor]]:
    """vlart state dict -> ``{group: {CogACT key: float32 tensor}}``, CogACT's release layout (works on the meta
    device, which is how the manifest is made)."""
    rules = build_rules(config)
    check_rules_cover(rules, state)
    groups: dict[str, dict[str, torch.Tensor]] = {group: {} for group in GROUPS}
    for rule in rules:
        converted = to_cogact(rule, [state[k] for k in rule.vlart], [state[k] for k in rule.like])
        for key, tensor in zip(rule.cogact, converted, strict=True):
            groups[rule.group][key] = _standalone(tensor)
    return groups


def expected_layout(config: PolicyConfig) -> dict[str, dict[str, tuple[int, ...]]]:
    """``{group: {CogACT key: shape}}`` of the release layout of ``config``, without allocating weights."""
    with torch.device("meta"):
        model = CogACTPolicy(config)
    groups = cogact_state_dict(model.state_dict(), config)
    return {group: {key: tuple(t.shape) for key, t in tensors.items()} for group, tensors in groups.items()}


def manifest(config: PolicyConfig) -> dict[str, Any]:
    """The JSON manifest: every key of the release layout with its shape, grouped as in the ``.pt``."""
    layout = expected_layout(config)
    return {
        "format": "cogact-manifest",
        "model": config.name,
        "dtype": "float32",
        "parameters": {group: sum(math.prod(s) for s in keys.values()) for group, keys in layout.items()},
        "groups": {group: {key: list(shape) for key, shape in keys.items()} for group, keys in layout.items()},
    }

