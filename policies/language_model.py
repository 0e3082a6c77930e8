"""The LLaMA language model of CogACT and the cognition feature it produces.

Sequence layout (as Prismatic builds it): [BOS embedding | N projected visual tokens | the rest of the prompt's
token embeddings], where the prompt ends with CogACT's two appended ids (the empty piece and EOS). The cognition
feature is the hidden state after the final RMSNorm at the last valid position (the EOS). The LM head exists (it
is part of CogACT's checkpoint) but is never run: CogACT discards its logits.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.utils._pytree as pytree
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from policies.acceleration.token_selection import TokenSelector, text_to_visual_attention
from policies.llm_config import LLMConfig
from policies.tokenizer import cogact_prompt, cognition_suffix_ids


def build_llama(config: LLMConfig) -> LlamaForCausalLM:
    hf_config = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        hidden_act="silu",
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=None,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(hf_config)


class PromptTokens:
    """Tokenised prompts, right-padded: ``input_ids`` (B, L) long and ``lengths`` (B,) valid lengths (BOS included).
    ``padded``: whether any prompt is shorter than L, decided here, on the host, so that a compiled language model
    reads a Python bool instead of breaking its graph on a tensor comparison."""

    def __init__(self, input_ids: torch.Tensor, lengths: torch.Tensor, padded: Optional[bool] = None) -> None:
        self.input_ids = input_ids
        self.lengths = lengths
        self.padded = bool((lengths != input_ids.shape[1]).any()) if padded is None else padded

    def row(self, i: int) -> "PromptTokens":
        """Prompt i alone, without padding."""
        if not self.padded:  # no length to read: an exported model needs none (it would depend on the data)
            return PromptTokens(self.input_ids[i : i + 1], self.lengths[i : i + 1], padded=False)
        length = int(self.lengths[i])
        return PromptTokens(self.input_ids[i : i + 1, :length], self.lengths[i : i + 1], padded=False)


# A pytree node (its tensors the children, ``padded`` the context), so that an exported language model takes one.
pytree.register_pytree_node(
    PromptTokens,
    lambda prompt: ([prompt.input_ids, prompt.lengths], prompt.padded),
    lambda children, padded: PromptTokens(*children, padded=padded),
    flatten_with_keys_fn=lambda prompt: ([(pytree.GetAttrKey("input_ids"), prompt.input_ids),
                                          (pytree.GetAttrKey("lengths"), prompt.lengths)], prompt.padded),
)


class CognitionLanguageModel(nn.Module):
    """Visual tokens (B, N, hidden) + prompts -> cognition features (B, hidden)."""

    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        self.config = config
        self.llm = build_llama(config)
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self._suffix: list[int] = []
        self.token_selector: Optional[TokenSelector] = None
        self.last_kept_visual: Optional[torch.Tensor] = None

    def set_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        if len(tokenizer) > self.config.vocab_size:
            raise ValueError(
                f"llm.vocab_size={self.config.vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)"
            )
        self._suffix = cognition_suffix_ids(tokenizer)
        self.tokenizer = tokenizer

    def tokenize(self, instructions: list[str]) -> PromptTokens:
        """Instructions -> CogACT prompt ids, each [BOS, prompt..., empty piece, EOS], right-padded with EOS."""
        if self.tokenizer is None:
            raise RuntimeError(
                "llm.tokenizer: this model has no tokenizer; set llm.tokenizer in the config to a directory with the "
                "LLaMA-2 tokenizer files (they ship with CogACT checkpoints)"
            )
        rows = [self.tokenizer(cogact_prompt(text)).input_ids + self._suffix for text in instructions]
        lengths = torch.tensor([len(r) for r in rows])
        width = int(lengths.max())
        ids = torch.full((len(rows), width), self._suffix[-1], dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return PromptTokens(ids, lengths)

    def embed_sequence(
        self, visual: torch.Tensor, prompt: PromptTokens, visual_mask: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """visual (B, N, hidden) -> (inputs_embeds (B, 1 + N + L - 1, hidden), attention mask (B, same) long).
        ``visual_mask`` (B, N), 1 = valid, masks visual tokens out (a front end's token mask)."""
        device = visual.device
        ids = prompt.input_ids.to(device)
        text = self.llm.model.embed_tokens(ids)
        embeds = torch.cat([text[:, :1], visual.to(text.dtype), text[:, 1:]], dim=1)
        positions = torch.arange(ids.shape[1], device=device)
        text_mask = (positions[None, :] < prompt.lengths.to(device)[:, None]).long()
        if visual_mask is None:
            visual_mask = torch.ones(visual.shape[:2], dtype=torch.long, device=device)
        visual_mask = visual_mask.to(device=device, dtype=torch.long)
        mask = torch.cat([text_mask[:, :1], visual_mask, text_mask[:, 1:]], dim=1)
        return embeds, mask

    def forward(
        self, visual: torch.Tensor, prompt: PromptTokens, visual_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """visual (B, N, hidden), prompts -> cognition (B, hidden): final-norm state at each row's last valid position.
        ``visual_mask`` (B, N), 1 = valid: masked visual tokens are not attended to (with token selection they are
        dropped before the first layer)."""
        if visual_mask is not None and bool(visual_mask.all()):
            visual_mask = None
        if self.token_selector is not None:
            rows = []
            for i in range(len(visual)):
                row = visual[i : i + 1] if visual_mask is None else visual[i : i + 1, visual_mask[i].bool()]
                rows.append(self._forward_selecting(row, prompt.row(i)))
            return torch.cat(rows)
        embeds, mask = self.embed_sequence(visual, prompt, visual_mask)
        padded = visual_mask is not None or prompt.padded
        hidden = self.llm.model(
            inputs_embeds=embeds, attention_mask=mask if padded else None, use_cache=False
        ).last_hidden_state
        last = (prompt.lengths.to(visual.device) + visual.shape[1] - 1).view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
        return hidden.gather(1, last).squeeze(1)

    def _forward_selecting(self, visual: torch.Tensor, prompt: PromptTokens) -> torch.Tensor:
        """One unpadded row through the decoder layers, dropping visual tokens after the selector's layer.

        visual (1, N, hidden) -> cognition (1, hidden). Kept tokens keep their order and original position ids."""
        selector = self.token_selector
        assert selector is not None
        model = self.llm.model
        hidden, _ = self.embed_sequence(visual, prompt)
        num_visual = visual.shape[1]
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
        cos, sin = model.rotary_emb(hidden, positions)
        for index, layer in enumerate(model.layers[: model.config.num_hidden_layers]):
            select_here = index == selector.layer and num_visual > selector.keep
            if select_here:
                relevance = text_to_visual_attention(layer, hidden, (cos, sin), num_visual)
            hidden = layer(hidden, attention_mask=None, position_ids=positions, position_embeddings=(cos, sin))
            if select_here:
                kept = selector.select(relevance, hidden[:, 1 : 1 + num_visual])
                self.last_kept_visual = kept
                keep = torch.cat([
                    torch.zeros(1, dtype=torch.long, device=hidden.device),
                    kept[0] + 1,
                    torch.arange(1 + num_visual, hidden.shape[1], device=hidden.device),
                ])
                hidden, positions, cos, sin = hidden[:, keep], positions[:, keep], cos[:, keep], sin[:, keep]
        return model.norm(hidden)[:, -1]
