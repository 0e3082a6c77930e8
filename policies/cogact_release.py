"""CogACT release checkpoints: load them into vlart, and write vlart's weights in their layout.

A release directory (``CogACT/CogACT-{Small,Base,Large}``) holds::

    checkpoints/<name>.pt      exactly one; {"model": {"vision_backbone": sd, "projector": sd,
                               "llm_backbone": sd, "action_model": sd}}, every tensor float32
    config.json                {"vla": {"base_vlm": "prism-dinosiglip-224px+7b", ...},
                                "diffusion_model_type": "DiT-B", "future_action_window_size": 15, ...}
    dataset_statistics.json    action statistics per unnorm key (the user picks one with --unnorm-key)
    tokenizer files            the LLaMA-2 tokenizer (tokenizer.model / tokenizer.json + tokenizer_config.json),
                               placed there by the user (the Hugging Face repos do not carry them)

``config.json["vla"]["base_vlm"]`` chooses the vision towers and the LLM (only ``prism-dinosiglip-224px+7b``, the
CogACT-Base shape, is known); the DiT size is not recorded in a form CogACT reads, so it is inferred from the
``action_model`` tensor shapes. A release written by ``vlart export --format cogact-release`` also carries
``vlart_config.yaml``, the vlart model config it was exported from: when that file is present it decides the shapes
(this is how releases of the small test shapes load); published releases do not have it.

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

import copy
import ctypes
import json
import logging
import mmap
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import torch

from policies.config import DIT_SIZES, PolicyConfig, load_config, save_config
from policies.policy import CogACTPolicy
from runtime.yaml_config import ConfigError, apply_overrides, from_dict

VISION, PROJECTOR, LLM, ACTION = "vision_backbone", "projector", "llm_backbone", "action_model"
GROUPS = (VISION, PROJECTOR, LLM, ACTION)
RELEASE_CONFIG = "config.json"
CHECKPOINT_DIR = "checkpoints"
STATISTICS_FILE = "dataset_statistics.json"
VLART_CONFIG = "vlart_config.yaml"  # only in releases written by vlart; published releases do not have it
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
FORMATS = ("cogact-pt", "cogact-release", "cogact-manifest", "safetensors")

# The vision towers and LLM of each base VLM CogACT knows, as vlart config sections (configs/models/cogact-base.yaml).
BASE_VLMS: dict[str, dict[str, Any]] = {
    "prism-dinosiglip-224px+7b": {
        "vision": {
            "image_size": 224,
            "dino": {"hidden_size": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4, "patch_size": 14,
                     "num_register_tokens": 4},
            "siglip": {"hidden_size": 1152, "depth": 27, "num_heads": 16, "intermediate_size": 4304, "patch_size": 14},
        },
        "llm": {"hidden_size": 4096, "num_layers": 32, "num_heads": 32, "intermediate_size": 11008,
                "vocab_size": 32064, "max_position_embeddings": 4096, "rms_norm_eps": 1.0e-5},
    },
}

_LIST_LIMIT = 20  # keys named per category in an error; the rest are counted
log = logging.getLogger(__name__)


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
            + _describe([("vlart keys no rule fills", uncovered), ("rule keys the model does not have", unknown),
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
        "parameters": {group: sum(_numel(s) for s in keys.values()) for group, keys in layout.items()},
        "groups": {group: {key: list(shape) for key, shape in keys.items()} for group, keys in layout.items()},
    }


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# --------------------------------------------------------------------------------------------------------------------
# Release directories


def is_release_dir(path: Path) -> bool:
    """A CogACT release: a ``checkpoints/`` folder and a ``config.json`` whose top level has a ``vla`` key."""
    config = path / RELEASE_CONFIG
    if not (path.is_dir() and (path / CHECKPOINT_DIR).is_dir() and config.is_file()):
        return False
    try:
        data = json.loads(config.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config}: not valid JSON: {exc}") from None
    return isinstance(data, dict) and "vla" in data


def release_checkpoint(directory: Path) -> Path:
    """The one ``checkpoints/*.pt`` (as CogACT's ``load_vla`` requires)."""
    found = sorted((directory / CHECKPOINT_DIR).glob("*.pt"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ValueError(f"{directory / CHECKPOINT_DIR}: expected exactly one .pt checkpoint, found {names}")
    return found[0]


def read_release_config(directory: Path) -> dict[str, Any]:
    path = directory / RELEASE_CONFIG
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory}: no {RELEASE_CONFIG}; not a CogACT release directory") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("vla"), dict):
        raise ValueError(f"{path}: expected a JSON object with a 'vla' object (a CogACT release config)")
    return data


def infer_dit_size(action_model: Mapping[str, torch.Tensor]) -> str:
    """S, B or L from the DiT tensors: hidden size H from ``net.x_embedder.linear.weight`` [H, 7] (384 / 768 /
    1024) and depth from the number of ``net.blocks.i`` (6 / 12 / 24)."""
    weight = action_model.get("net.x_embedder.linear.weight")
    if weight is None:
        raise ValueError("action_model: no net.x_embedder.linear.weight, so the DiT size cannot be inferred")
    hidden = int(weight.shape[0])
    depth = len({key.split(".")[2] for key in action_model if key.startswith("net.blocks.")})
    for size, (preset_depth, preset_hidden, _) in DIT_SIZES.items():
        if (preset_depth, preset_hidden) == (depth, hidden):
            return size
    known = "; ".join(f"DiT-{s}: {d} blocks, hidden {h}" for s, (d, h, _) in DIT_SIZES.items())
    raise ValueError(f"action_model: {depth} blocks of hidden size {hidden} match no DiT size ({known})")


def base_vlm_names() -> str:
    return ", ".join(sorted(BASE_VLMS))


def release_config_data(directory: Path, meta: dict[str, Any], action_model: Mapping[str, torch.Tensor]) -> dict:
    """The vlart config (as a dict) of a published release: the base VLM's towers and LLM, the inferred DiT size,
    the release's tokenizer files and statistics. No default unnorm key: the user chooses one, as in CogACT."""
    base_vlm = meta["vla"].get("base_vlm")
    if base_vlm not in BASE_VLMS:
        raise ValueError(
            f"{directory / RELEASE_CONFIG}: vla.base_vlm {base_vlm!r} is not supported; known base VLMs: "
            f"{base_vlm_names()}"
        )
    past = meta.get("past_action_window_size", 0)
    if past:
        raise ValueError(f"{directory / RELEASE_CONFIG}: past_action_window_size={past}; only 0 is supported")
    shapes = BASE_VLMS[base_vlm]
    return {
        "name": directory.resolve().name,
        "vision": copy.deepcopy(shapes["vision"]),  # overrides edit this dict in place, never the table
        "llm": {**shapes["llm"], "tokenizer": "."},
        "action_head": {"size": infer_dit_size(action_model),
                        "chunk_length": int(meta.get("future_action_window_size", 15)) + 1},
        "actions": {"statistics": STATISTICS_FILE, "unnorm_key": None},
    }


def release_config(
    directory: Path, action_model: Mapping[str, torch.Tensor], overrides: Optional[list[str]] = None
) -> PolicyConfig:
    """The vlart config of a release: ``vlart_config.yaml`` when present (releases vlart wrote), otherwise built
    from ``config.json``'s base VLM and the DiT tensor shapes. ``overrides`` are ``--set KEY=VALUE``."""
    meta = read_release_config(directory)
    if (directory / VLART_CONFIG).is_file():
        return load_config(directory / VLART_CONFIG, overrides)
    data = apply_overrides(release_config_data(directory, meta, action_model), overrides or [])
    try:
        config = from_dict(PolicyConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{directory}: {exc}") from None
    config.base_dir = directory.resolve()
    return config


def _check_tokenizer_files(directory: Path, config: PolicyConfig) -> None:
    """A release's tokenizer is the user's copy of the LLaMA-2 files; say so plainly when they are missing."""
    if config.llm.tokenizer is None or config.resolve_path(config.llm.tokenizer).resolve() != directory.resolve():
        return
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{directory}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); copy the LLaMA-2 tokenizer files "
            "(Llama-2-7b-hf) into the release directory, or point to them with --set llm.tokenizer=DIR"
        )


# --------------------------------------------------------------------------------------------------------------------
# Loading


def read_checkpoint(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The ``{"model": {group: state dict}}`` of a ``.pt``, memory-mapped (nothing is read until used)."""
    try:
        data = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:  # torch raises many kinds (zip, pickle, unsupported global)
        raise ValueError(f"{path}: cannot read the checkpoint: {exc}") from None
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        raise ValueError(f"{path}: expected a dict with a 'model' dict of groups ({', '.join(GROUPS)})")
    for group, state in model.items():
        if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
            raise ValueError(f"{path}: group {group!r} is not a state dict of tensors")
    return model


_MADV_DONTNEED = 4  # Linux


def file_mappings(path: Path) -> list[tuple[int, int]]:
    """The address ranges where this process maps ``path`` (Linux ``/proc/self/maps``; empty elsewhere)."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    target = str(Path(path).resolve())
    regions = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target:
            low, high = fields[0].split("-")
            regions.append((int(low, 16), int(high, 16)))
    return regions


def release_mapped_pages(tensors: Iterable[torch.Tensor], regions: list[tuple[int, int]]) -> None:
    """Drop the pages of already-copied checkpoint tensors from this process (``madvise(MADV_DONTNEED)``), so the
    memory-mapped ``.pt`` does not add its whole size to the resident memory while the model fills up.

    Only pages inside ``regions`` (the checkpoint file's mappings, never written) are touched: such a page, also a
    neighbour's when a tensor does not end on a page boundary, is simply read from the file again if used later.
    A tensor outside them (not memory-mapped) is left alone, since dropping anonymous memory would discard data.
    """
    if not regions or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE
    for tensor in tensors:
        size = tensor.numel() * tensor.element_size()
        if size == 0 or tensor.device.type != "cpu":
            continue
        first, last = tensor.data_ptr(), tensor.data_ptr() + size
        for low, high in regions:
            if low <= first and last <= high:
                start = max(low, first // page * page)
                end = min(high, -(-last // page) * page)
                libc.madvise(start, end - start, _MADV_DONTNEED)
                break


def _describe(items: list[tuple[str, list[str]]]) -> str:
    parts = []
    for label, keys in items:
        if keys:
            more = f" ... and {len(keys) - _LIST_LIMIT} more" if len(keys) > _LIST_LIMIT else ""
            parts.append(f"{label}: {', '.join(keys[:_LIST_LIMIT])}{more}")
    return "; ".join(parts)


def check_checkpoint(
    groups: Mapping[str, Mapping[str, torch.Tensor]], config: PolicyConfig, source: Path
) -> None:
    """Every key of the checkpoint is one the layout of ``config`` expects, with the expected shape, and every
    expected key is there (the unused history embedder may be absent). Checked before any weight is allocated."""
    layout = expected_layout(config)
    optional = {(r.group, k) for r in build_rules(config) if r.kind == "unused" for k in r.cogact}
    missing, unexpected, shapes = [], [], []
    for group in sorted(set(groups) - set(layout)):
        unexpected.append(f"group {group!r}")
    for group, keys in layout.items():
        if group not in groups:
            missing.append(f"group {group!r}")
            continue
        found = groups[group]
        missing += [f"{group}/{k}" for k in keys if k not in found and (group, k) not in optional]
        unexpected += [f"{group}/{k}" for k in found if k not in keys]
        shapes += [
            f"{group}/{k} has shape {list(found[k].shape)}, expected {list(shape)}"
            for k, shape in keys.items() if k in found and tuple(found[k].shape) != shape
        ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{source}: does not match the {config.name} layout: "
            + _describe([("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)])
        )


@torch.no_grad()
def load_groups(
    policy: CogACTPolicy,
    groups: Mapping[str, Mapping[str, torch.Tensor]],
    regions: Optional[list[tuple[int, int]]] = None,
) -> list[str]:
    """Copy the checkpoint into the (uninitialised) policy group by group, casting to each parameter's dtype.
    ``regions``: the checkpoint file's mappings (``file_mappings``); the pages of each copied tensor inside them
    are released. Returns the vlart keys filled with zeros because CogACT has no tensor for them."""
    targets = policy.state_dict()
    rules = build_rules(policy.config)
    check_rules_cover(rules, targets)
    filled: set[str] = set()
    zeroed: list[str] = []
    for group in GROUPS:
        source = groups[group]
        for rule in (r for r in rules if r.group == group):
            if rule.kind == "unused":
                continue
            if rule.kind == "fill_zeros":
                values = [torch.zeros_like(targets[k]) for k in rule.vlart]
                zeroed += rule.vlart
            else:
                values = to_vlart(rule, [source[k] for k in rule.cogact])
            for key, value in zip(rule.vlart, values, strict=True):
                targets[key].copy_(value)
                filled.add(key)
            if regions:
                release_mapped_pages((source[k] for k in rule.cogact), regions)
    unfilled = sorted(set(targets) - filled)
    if unfilled:
        raise ValueError("CogACT checkpoint left vlart keys unfilled: " + _describe([("keys", unfilled)]))
    return zeroed


def load_release(
    directory: str | Path,
    unnorm_key: Optional[str] = None,
    device: Optional[str] = None,
    overrides: Optional[list[str]] = None,
    select_statistics: bool = True,
) -> CogACTPolicy:
    """A CogACT release directory -> a policy in ``runtime.dtype`` (the action head stays float32, as in CogACT).

    The ``.pt`` is memory-mapped and checked against the expected layout before the model is allocated; the model
    is then built uninitialised in its dtype and filled group by group, so memory holds the model once plus the
    checkpoint pages being copied. ``select_statistics=False`` keeps the whole statistics file without choosing an
    unnorm key (for ``convert``/``export``, which pass every key on).
    """
    from policies.factory import build_policy

    directory = Path(directory).expanduser()
    weights = release_checkpoint(directory)
    groups = read_checkpoint(weights)
    config = release_config(directory, groups.get(ACTION, {}), overrides)
    _check_tokenizer_files(directory, config)
    check_checkpoint(groups, config, weights)
    if select_statistics or unnorm_key is not None:
        policy = build_policy(config, unnorm_key=unnorm_key, device=device, random_init=False)
    else:
        statistics = config.actions.statistics
        config.actions.statistics = None  # build without choosing a dataset; the file stays with the config
        policy = build_policy(config, device=device, random_init=False)
        config.actions.statistics = statistics
    zeroed = load_groups(policy, groups, regions=file_mappings(weights))
    log.info("loaded %s; filled with zeros (no CogACT tensor): %s", weights, ", ".join(zeroed))
    return policy


# --------------------------------------------------------------------------------------------------------------------
# Export


def export_cogact_pt(policy: CogACTPolicy, path: str | Path) -> Path:
    """Write the policy's weights as a CogACT ``.pt``: ``{"model": {group: state dict}}``, float32."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in policy.state_dict().items()}
    torch.save({"model": cogact_state_dict(state, policy.config)}, path)
    return path


def base_vlm_of(config: PolicyConfig) -> Optional[str]:
    """The base VLM whose towers and LLM ``config`` has, or None."""
    for name, shapes in BASE_VLMS.items():
        base = from_dict(PolicyConfig, {"vision": shapes["vision"], "llm": shapes["llm"]})
        base.llm.tokenizer = config.llm.tokenizer
        if base.vision == config.vision and base.llm == config.llm:
            return name
    return None


def dit_type_of(config: PolicyConfig) -> str:
    head = config.action_head
    for size, preset in DIT_SIZES.items():
        if preset == (head.depth, head.hidden_size, head.num_heads):
            return f"DiT-{size}"
    return "DiT-custom"


def release_meta(config: PolicyConfig) -> dict[str, Any]:
    """The ``config.json`` of an exported release (the fields CogACT's loader and users read)."""
    base_vlm = base_vlm_of(config)
    return {
        "vla": {
            "vla_id": config.name,
            "base_vlm": base_vlm or f"vlart-custom:{config.name}",  # vlart_config.yaml holds the custom shapes
        },
        "diffusion_model_type": dit_type_of(config),
        "future_action_window_size": config.action_head.chunk_length - 1,
        "past_action_window_size": 0,
        "repeated_diffusion_steps": 8,
        "exported_by": "vlart",
    }


def export_release(policy: CogACTPolicy, directory: str | Path) -> Path:
    """Write a whole release directory that ``load_release`` (and a user of CogACT's layout) reads back:
    ``checkpoints/<name>.pt``, ``config.json``, ``dataset_statistics.json``, tokenizer files, ``vlart_config.yaml``."""
    directory = Path(directory)
    config = policy.config
    if config.actions.statistics is None:
        raise ValueError(f"{config.name}: no actions.statistics file; a release needs {STATISTICS_FILE}")
    directory.mkdir(parents=True, exist_ok=True)
    export_cogact_pt(policy, directory / CHECKPOINT_DIR / f"{config.name}.pt")
    (directory / RELEASE_CONFIG).write_text(json.dumps(release_meta(config), indent=2) + "\n")
    shutil.copyfile(config.resolve_path(config.actions.statistics), directory / STATISTICS_FILE)
    tokenizer = policy.language_model.tokenizer
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    saved = config.to_dict()
    saved["actions"]["statistics"] = STATISTICS_FILE
    saved["llm"]["tokenizer"] = "." if tokenizer is not None else None
    save_config(saved, directory / VLART_CONFIG)
    return directory


def model_config(model: str | Path, overrides: Optional[list[str]] = None) -> PolicyConfig:
    """The config behind ``--model`` (YAML, vlart checkpoint or release) without loading any weight."""
    from policies.factory import CONFIG_FILE

    path = Path(model).expanduser()
    if path.is_dir() and is_release_dir(path):
        return release_config(path, read_checkpoint(release_checkpoint(path)).get(ACTION, {}), overrides)
    if path.is_dir():
        return load_config(path / CONFIG_FILE, overrides)
    return load_config(path, overrides)


def load_for_export(
    model: str | Path, unnorm_key: Optional[str] = None, overrides: Optional[list[str]] = None
) -> CogACTPolicy:
    """``--model`` for export/convert: a release keeps all its unnorm keys unless one is chosen."""
    from policies.factory import load_policy

    path = Path(model).expanduser()
    if path.is_dir() and is_release_dir(path):
        return load_release(path, unnorm_key=unnorm_key, overrides=overrides, select_statistics=False)
    return load_policy(path, unnorm_key=unnorm_key, overrides=overrides)


def export_model(
    model: str | Path,
    fmt: str,
    out: str | Path,
    unnorm_key: Optional[str] = None,
    overrides: Optional[list[str]] = None,
    weights_dtype: Optional[str] = None,
) -> Path:
    """``vlart export``: ``cogact-pt`` (FILE.pt), ``cogact-release`` (DIR), ``cogact-manifest`` (FILE.json, meta
    device, no weights) or ``safetensors`` (DIR, vlart's own checkpoint format, its weights stored as
    ``weights_dtype`` when given: fp16 halves a float32 checkpoint)."""
    from policies.factory import save_pretrained

    if weights_dtype is not None and fmt != "safetensors":
        raise ValueError("--weights-dtype: only the safetensors format stores a weights dtype")
    if weights_dtype is not None and weights_dtype not in CONVERT_DTYPES:
        raise ValueError(f"--weights-dtype {weights_dtype!r}: expected one of {', '.join(CONVERT_DTYPES)}")
    out = Path(out)
    if fmt == "cogact-manifest":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(manifest(model_config(model, overrides)), indent=1) + "\n")
        return out
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    policy = load_for_export(model, unnorm_key, overrides)
    if fmt == "cogact-pt":
        return export_cogact_pt(policy, out)
    if fmt == "cogact-release":
        return export_release(policy, out)
    if weights_dtype is None:
        return save_pretrained(policy, out)
    return save_pretrained(policy, out, weights_dtype=getattr(torch, CONVERT_DTYPES[weights_dtype]))


CONVERT_DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
                  "fp16": "float16", "float16": "float16"}


def convert_release(
    source: str | Path,
    target: str | Path,
    dtype: str = "fp32",
    unnorm_key: Optional[str] = None,
    overrides: Optional[list[str]] = None,
) -> Path:
    """``vlart convert``: a CogACT release -> a vlart checkpoint directory (safetensors, memory-mapped loads) in
    ``dtype``; every unnorm key is kept (``unnorm_key`` becomes the default)."""
    from policies.factory import save_pretrained

    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--from {source}: no such directory")
    if not is_release_dir(path):
        raise ValueError(f"--from {source}: not a CogACT release (expected {CHECKPOINT_DIR}/*.pt and {RELEASE_CONFIG})")
    if dtype not in CONVERT_DTYPES:
        raise ValueError(f"--dtype {dtype!r}: expected one of {', '.join(CONVERT_DTYPES)}")
    settings = [*(overrides or []), f"runtime.dtype={CONVERT_DTYPES[dtype]}"]
    policy = load_release(path, unnorm_key=unnorm_key, overrides=settings, select_statistics=False)
    return save_pretrained(policy, target)
