"""Tokenizers from local files only, and the small tokenizer that ships with vlart for the tiny/small configs.

A tokenizer is a directory of transformers tokenizer files: the LLaMA-2 files that come with a CogACT checkpoint,
or ``policies/assets/tokenizers/vlart-tiny`` (built by ``build_tiny_tokenizer`` with the ``tokenizers`` library:
a SentencePiece-style BPE with byte fallback, ``<s>`` prepended like LLaMA's), and CogACT's prompt around an
instruction. Nothing here contacts a model hub.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from policies.api.interface import IMAGE_PLACEHOLDER, instruction_problem

BUILTIN_TOKENIZERS = Path(__file__).resolve().parent / "assets" / "tokenizers"
TINY_TOKENIZER_NAME = "vlart-tiny"
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
EMPTY_PIECE = "\u2581"  # SentencePiece's word-boundary mark; alone it is LLaMA's token 29871


def cogact_prompt(instruction: str) -> str:
    """The text CogACT tokenises for ``instruction`` (``predict_action`` with Prismatic's ``PurePromptBuilder``): the
    lowercased instruction in its question, every literal ``<image>`` removed from that message and the message
    stripped, wrapped as the human turn, right-stripped. Raises ValueError if nothing of the instruction is left."""
    problem = instruction_problem(instruction)
    if problem is not None:
        raise ValueError(f"instruction: {problem}")
    message = f"What action should the robot take to {instruction.lower()}?".replace(IMAGE_PLACEHOLDER, "").strip()
    return f"In: {message}\nOut: ".rstrip()


def resolve_tokenizer_dir(value: str, base_dir: Path | None) -> Path:
    """``value`` is a directory (relative to ``base_dir``) or the name of a tokenizer shipped with vlart."""
    candidate = Path(value).expanduser()
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    if candidate.is_dir():
        return candidate
    builtin = BUILTIN_TOKENIZERS / value
    if builtin.is_dir():
        return builtin
    shipped = ", ".join(sorted(p.name for p in BUILTIN_TOKENIZERS.iterdir() if p.is_dir()))
    raise FileNotFoundError(
        f"llm.tokenizer: {value!r} is neither a directory (looked at {candidate}) nor a tokenizer shipped with vlart "
        f"({shipped})"
    )


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    """Load tokenizer files from ``directory``; never downloads."""
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer in {directory}: needs BOS and EOS tokens (LLaMA-style)")
    return tokenizer


def cognition_suffix_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids CogACT appends after the prompt: the empty piece and EOS ([29871, 2] for LLaMA-2).
    The EOS position is the cognition token."""
    empty = tokenizer.convert_tokens_to_ids(EMPTY_PIECE)
    if empty is None or empty == tokenizer.unk_token_id:
        raise ValueError(f"tokenizer has no {EMPTY_PIECE!r} (empty SentencePiece) token; not a LLaMA-style tokenizer")
    return [empty, tokenizer.eos_token_id]


_OBJECTS = [
    "carrot", "plate", "spoon", "towel", "cloth", "green cube", "yellow cube", "red cube", "blue block", "eggplant",
    "basket", "coke can", "pepsi can", "can", "apple", "orange", "sponge", "bottle", "drawer", "sink", "cup", "bowl",
    "pot", "pan", "lid", "knife", "fork", "banana", "corn", "mushroom", "table", "rack", "shelf", "microwave",
]
_TEMPLATES = [
    "put the {a} on the {b}", "put {a} on {b}", "put {a} into {b}", "put the {a} in the {b}", "stack the {a} on the {b}",
    "pick up the {a}", "pick {a}", "move the {a} near the {b}", "move {a} near {b}", "place the {a} on top of the {b}",
    "open the top {a}", "close the middle {a}", "open {a}", "close {a}", "push the {a} to the left of the {b}",
    "take the {a} out of the {b}", "wipe the {b} with the {a}", "turn on the {a}", "lift the {a}",
]


def tiny_tokenizer_corpus() -> list[str]:
    """Robot instructions inside CogACT's prompt, the text the tiny tokenizer is trained on."""
    lines = []
    for template, a, b in itertools.product(_TEMPLATES, _OBJECTS, _OBJECTS[:12]):
        if a != b:
            lines.append(cogact_prompt(template.format(a=a, b=b)))
    return lines


def build_tiny_tokenizer(out_dir: Path, vocab_size: int = 1000) -> None:
    """Write ``vlart-tiny``: ``<unk>``, ``<s>``, ``</s>`` at ids 0..2, byte-fallback tokens ``<0x00>``..``<0xFF>`` at
    3..258 (LLaMA's layout), then BPE pieces learned from ``tiny_tokenizer_corpus()``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    pre_tokenizer = pre_tokenizers.Metaspace(replacement=EMPTY_PIECE, prepend_scheme="first")
    learned = Tokenizer(models.BPE(unk_token="<unk>"))
    learned.pre_tokenizer = pre_tokenizer
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS) - len(byte_tokens),
        special_tokens=[],
        initial_alphabet=[EMPTY_PIECE],
        show_progress=False,
    )
    learned.train_from_iterator(tiny_tokenizer_corpus(), trainer)
    model = json.loads(learned.to_str())["model"]
    ranked = sorted(model["vocab"].items(), key=lambda item: item[1])
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + byte_tokens)}
    for token, _ in ranked:
        vocab.setdefault(token, len(vocab))

    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]],
                   unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.Sequence(
        [decoders.Metaspace(replacement=EMPTY_PIECE, prepend_scheme="first"), decoders.ByteFallback(), decoders.Fuse()]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": 2048,
        "clean_up_tokenization_spaces": False,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    build_tiny_tokenizer(BUILTIN_TOKENIZERS / TINY_TOKENIZER_NAME)
