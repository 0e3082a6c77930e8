"""The files of a CogACT release directory and the base VLMs whose shapes vlart knows.

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
"""

from __future__ import annotations

from typing import Any

RELEASE_CONFIG = "config.json"
CHECKPOINT_DIR = "checkpoints"
VLART_CONFIG = "vlart_config.yaml"  # only in releases written by vlart; published releases do not have it
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")

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
