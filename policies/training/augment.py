"""CogACT's training image augmentation without torchvision: a random square crop of 90% of the area resized back,
then brightness (x[0.8, 1.2]), contrast [0.8, 1.2], saturation [0.8, 1.2] and hue (+-0.05 of the circle), with PIL."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance

CROP_AREA = 0.9


def augment_frame(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(S, S, 3) uint8 -> an augmented (S, S, 3) uint8 frame."""
    size = frame.shape[0]
    side = int(round(size * np.sqrt(CROP_AREA)))
    top, left = rng.integers(0, size - side + 1, size=2)
    image = Image.fromarray(frame).crop((int(left), int(top), int(left) + side, int(top) + side))
    image = image.resize((frame.shape[1], size), Image.BICUBIC)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.8, 1.2))
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(rng.uniform(-0.05, 0.05) * 255))) % 256
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def augment_frames(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.stack([augment_frame(frame, rng) for frame in frames])
