"""Small tokenizers for the text encoders of the fusion front ends, built offline with the ``tokenizers`` library.

- ``vlart-roberta-tiny`` (FIBER, BridgeTower): RoBERTa's layout, byte-level BPE, ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2,
  ``<unk>`` 3, ``<mask>`` 4, sequences ``<s> text </s>``. The pad id 1 matters: RoBERTa-style embeddings number
  positions from ``pad_token_id + 1`` and keep padded positions at the pad id.
- ``vlart-clip-tiny`` (HiCroPL's CLIP text branch): CLIP's layout, lower-cased, byte-level BPE with the ``</w>``
  end-of-word suffix, the 256 byte symbols with and without ``</w>`` first, then the learned merges, then
  ``<|startoftext|>`` and ``<|endoftext|>`` (also the pad token) last.

Both are trained on the robot instructions of ``policies.tokenizer.tiny_tokenizer_corpus`` (1000 tokens each).
A model with pretrained weights needs the tokenizer it was trained with: point the front end's ``tokenizer`` key at
a directory holding it. Rebuild the shipped ones with ``python -m policies.front_ends.text_tokenizers``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from policies.tokenizer import BUILTIN_TOKENIZERS, tiny_tokenizer_corpus

ROBERTA_TINY = "vlart-roberta-tiny"
CLIP_TINY = "vlart-clip-tiny"
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def instruction_corpus() -> list[str]:
    """The instructions inside the tiny tokenizer's CogACT prompts (the text a front end's encoder sees)."""
    return [re.search(r"take to (.*)\?", line).group(1) for line in tiny_tokenizer_corpus()]


def _write_config(out_dir: Path, config: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def build_roberta_tokenizer(out_dir: Path, vocab_size: int = 1000) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=ROBERTA_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(instruction_corpus(), trainer)
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    _write_config(out_dir, {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "model_max_length": 512,
        "clean_up_tokenization_spaces": False,
    })


def build_clip_tokenizer(out_dir: Path, vocab_size: int = 1000) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    base = alphabet + [symbol + "</w>" for symbol in alphabet]
    learned = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    learned.normalizer = normalizer
    learned.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 2,
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    learned.train_from_iterator(instruction_corpus(), trainer)
    model = json.loads(learned.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    vocab = {token: i for i, token in enumerate(base)}
    for left, right in merges:
        if len(vocab) >= vocab_size - 2:
            break
        vocab.setdefault(left + right, len(vocab))
    merges = [m for m in merges if m[0] + m[1] in vocab and m[0] in vocab and m[1] in vocab]
    vocab[CLIP_BOS] = len(vocab)
    vocab[CLIP_EOS] = len(vocab)

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", unk_token=CLIP_EOS))
    tokenizer.add_special_tokens([CLIP_BOS, CLIP_EOS])
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.Sequence([decoders.Replace("</w>", "\u0120"), decoders.ByteLevel()])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLIP_BOS} $A {CLIP_EOS}",
        pair=f"{CLIP_BOS} $A {CLIP_EOS} $B {CLIP_EOS}",
        special_tokens=[(CLIP_BOS, vocab[CLIP_BOS]), (CLIP_EOS, vocab[CLIP_EOS])],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    _write_config(out_dir, {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": CLIP_BOS,
        "eos_token": CLIP_EOS,
        "unk_token": CLIP_EOS,
        "pad_token": CLIP_EOS,
        "model_max_length": 77,
        "clean_up_tokenization_spaces": False,
    })


if __name__ == "__main__":
    build_roberta_tokenizer(BUILTIN_TOKENIZERS / ROBERTA_TINY)
    build_clip_tokenizer(BUILTIN_TOKENIZERS / CLIP_TINY)
