import pytest
import torch

from policies.tokenizer import (BUILTIN_TOKENIZERS, TINY_TOKENIZER_NAME, build_tiny_tokenizer, cogact_prompt,
                                cognition_suffix_ids, load_tokenizer)


def test_prompt_is_cogacts_pure_prompt_lowercased():
    assert cogact_prompt("Put the Carrot on the Plate") == (
        "In: What action should the robot take to put the carrot on the plate?\nOut:"
    )


def test_prompt_drops_image_placeholders_as_prismatic_does(tiny_policy):
    # PurePromptBuilder removes "<image>" from the lowercased message and strips only the message's ends.
    assert cogact_prompt("<IMAGE> Put the Spoon<image>") == (
        "In: What action should the robot take to  put the spoon?\nOut:"
    )
    lm = tiny_policy.language_model
    plain = lm.tokenize(["put carrot on plate"])
    placeholders = lm.tokenize(["<image>put carrot<image> on plate"])
    assert placeholders.input_ids.tolist() == plain.input_ids.tolist()


@pytest.mark.parametrize("instruction", ["<image>", " <Image> <image> "])
def test_an_instruction_of_placeholders_only_is_refused(tiny_policy, instruction):
    with pytest.raises(ValueError, match="^instruction: .* is empty once CogACT's prompt builder removes '<image>'"):
        tiny_policy.language_model.tokenize([instruction])


def test_tokenize_adds_bos_and_the_empty_piece_and_eos(tiny_policy):
    lm = tiny_policy.language_model
    tokenizer = lm.tokenizer
    prompt = lm.tokenize(["put carrot on plate"])
    ids = prompt.input_ids[0].tolist()
    expected = tokenizer(cogact_prompt("put carrot on plate")).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert ids == expected + [tokenizer.convert_tokens_to_ids("\u2581"), tokenizer.eos_token_id]
    assert prompt.lengths.tolist() == [len(ids)]


def test_sequence_layout_is_bos_then_visual_then_text(tiny_policy):
    lm = tiny_policy.language_model
    prompt = lm.tokenize(["open the drawer"])
    visual = torch.randn(1, 256, 64)
    embeds, mask = lm.embed_sequence(visual, prompt)
    text = lm.llm.model.embed_tokens(prompt.input_ids)
    length = prompt.input_ids.shape[1]
    assert embeds.shape == (1, 256 + length, 64)
    assert torch.equal(embeds[:, 0], text[:, 0])
    assert torch.equal(embeds[:, 1:257], visual)
    assert torch.equal(embeds[:, 257:], text[:, 1:])
    assert mask.tolist() == [[1] * (256 + length)]


def test_cognition_is_final_norm_state_at_last_position(tiny_policy):
    lm = tiny_policy.language_model
    prompt = lm.tokenize(["open the drawer"])
    visual = torch.randn(1, 256, 64)
    with torch.no_grad():
        cognition = lm(visual, prompt)
        embeds, _ = lm.embed_sequence(visual, prompt)
        out = lm.llm(inputs_embeds=embeds, output_hidden_states=True)
    assert cognition.shape == (1, 64)
    # transformers' last hidden_states entry is taken after the final RMSNorm, as CogACT reads it.
    assert torch.allclose(cognition, out.hidden_states[-1][:, -1], atol=1e-5)


def test_padded_batch_gives_each_rows_own_cognition(tiny_policy):
    lm = tiny_policy.language_model
    texts = ["pick coke can", "put the spoon on the towel and then wipe the table with the sponge"]
    visual = torch.randn(2, 256, 64)
    with torch.no_grad():
        batch = lm(visual, lm.tokenize(texts))
        singles = torch.cat([lm(visual[i : i + 1], lm.tokenize([t])) for i, t in enumerate(texts)])
    assert torch.allclose(batch, singles, atol=1e-5)


def test_tokenizer_without_llm_tokenizer_is_a_clear_error():
    from policies.llm_config import LLMConfig
    from policies.language_model import CognitionLanguageModel

    with torch.device("meta"):
        lm = CognitionLanguageModel(LLMConfig(hidden_size=64, num_layers=1, num_heads=4, intermediate_size=128,
                                              vocab_size=576))
    with pytest.raises(RuntimeError, match="llm.tokenizer: this model has no tokenizer"):
        lm.tokenize(["x"])


def test_shipped_tiny_tokenizer_is_reproducible(tmp_path):
    build_tiny_tokenizer(tmp_path)
    shipped = BUILTIN_TOKENIZERS / TINY_TOKENIZER_NAME
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / name).read_text() == (shipped / name).read_text()


def test_tiny_tokenizer_is_llama_style():
    tokenizer = load_tokenizer(BUILTIN_TOKENIZERS / TINY_TOKENIZER_NAME)
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.convert_tokens_to_ids("<0x41>") == 3 + 0x41
    ids = tokenizer("grasp the 机器人").input_ids
    assert ids[0] == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "grasp the 机器人"
    assert cognition_suffix_ids(tokenizer) == [tokenizer.convert_tokens_to_ids("\u2581"), 2]
