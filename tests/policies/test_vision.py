import numpy as np
import pytest
import torch

from policies.config import load_config
from policies.image_transforms import (
    DINO_MEAN,
    DINO_STD,
    preprocess_images,
    resize_naive,
    validate_image,
)
from policies.front_ends.dinosiglip import DinoSigLIPFrontEnd
from tests.conftest import TINY


@pytest.fixture(scope="module")
def front_end():
    torch.manual_seed(0)
    return DinoSigLIPFrontEnd(load_config(TINY).vision).eval()


def test_transforms_normalise_with_each_towers_mean_and_std():
    image = np.full((224, 224, 3), (255, 128, 0), dtype=np.uint8)
    pixels = preprocess_images([image], 224)
    assert pixels["dino"].shape == (1, 3, 224, 224) and pixels["dino"].dtype == torch.float32
    expected_dino = [(255 / 255 - DINO_MEAN[0]) / DINO_STD[0], (128 / 255 - DINO_MEAN[1]) / DINO_STD[1],
                     (0 - DINO_MEAN[2]) / DINO_STD[2]]
    assert pixels["dino"][0, :, 5, 7].tolist() == pytest.approx(expected_dino, abs=1e-6)
    assert pixels["siglip"][0, :, 5, 7].tolist() == pytest.approx([1.0, 128 / 255 * 2 - 1, -1.0], abs=1e-6)


def test_resize_naive_ignores_aspect_ratio_and_is_bicubic():
    from PIL import Image

    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    resized = resize_naive(image, 224)
    assert resized.shape == (224, 224, 3) and resized.dtype == np.uint8
    expected = np.asarray(Image.fromarray(image).resize((224, 224), Image.BICUBIC))
    assert np.array_equal(resized, expected)
    assert resize_naive(resized, 224) is resized


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((224, 224, 3), dtype=np.float32), "expected dtype uint8"),
        (np.zeros((224, 224), dtype=np.uint8), r"expected shape \(H, W, 3\)"),
        (np.zeros((224, 224, 4), dtype=np.uint8), r"expected shape \(H, W, 3\), got \(224, 224, 4\)"),
        ([[1, 2, 3]], "expected a numpy uint8 array"),
        (np.zeros((0, 5, 3), dtype=np.uint8), "image is empty"),
    ],
)
def test_bad_images_are_refused_with_the_field_named(bad, message):
    with pytest.raises(ValueError, match=f"obs.image: {message}"):
        validate_image(bad, "obs.image")


def test_features_are_second_to_last_block_without_norm_or_prefix(front_end):
    pixels = preprocess_images([np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8)], 224)
    with torch.no_grad():
        tokens = front_end(pixels)
        dino_states = front_end.dino(pixels["dino"], output_hidden_states=True).hidden_states
        siglip_states = front_end.siglip(pixels["siglip"], output_hidden_states=True).hidden_states
    assert tokens.shape == (1, 256, 64)
    # hidden_states[i] is the input of block i; [-2] is the output of block depth-2, before the final norm.
    assert len(dino_states) == 4 and len(siglip_states) == 4
    assert torch.allclose(tokens[..., :32], dino_states[-2][:, 5:], atol=1e-6)
    assert torch.allclose(tokens[..., 32:], siglip_states[-2], atol=1e-6)


def test_dino_embeddings_have_a_cls_row_and_four_registers(front_end):
    # timm's DINOv2 adds position embeddings to patches only; transformers' has a CLS row, zero for CogACT weights.
    emb = front_end.dino.embeddings
    assert emb.position_embeddings.shape == (1, 257, 32)
    assert emb.register_tokens.shape == (1, 4, 32)


def test_front_end_batch_matches_single(front_end):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8) for _ in range(2)]
    with torch.no_grad():
        batch = front_end(front_end.preprocess(images))
        single = front_end(front_end.preprocess(images[1:]))
    assert torch.allclose(batch[1:], single, atol=1e-5)
