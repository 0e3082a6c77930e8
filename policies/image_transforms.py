"""CogACT's image transforms: resize-naive to a square (bicubic, aspect ratio not kept), then each tower's own
normalisation. Resizing a PIL image bicubically is what torchvision's ``Resize`` does on PIL input, so one resize
serves both towers and the normalisations differ only in mean and std."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

from policies.api.interface import image_problem

DINO_MEAN = (0.485, 0.456, 0.406)
DINO_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


def validate_image(image: object, field: str = "image") -> np.ndarray:
    """Return ``image`` (a PIL image or an (H, W, 3) uint8 array) as an array, or raise ``ValueError`` naming
    ``field`` and what was expected."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    problem = image_problem(image)
    if problem is not None:
        raise ValueError(f"{field}: {problem}")
    return image  # type: ignore[return-value]


def resize_naive(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, bicubic, aspect ratio not preserved."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))


def center_crop(image: np.ndarray, area: float) -> np.ndarray:
    """The central ``area`` fraction of an (H, W, 3) frame, each side scaled by sqrt(area); 1.0 returns the frame."""
    if area >= 1.0:
        return image
    height, width = image.shape[:2]
    crop_h, crop_w = max(1, round(height * area**0.5)), max(1, round(width * area**0.5))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return image[top : top + crop_h, left : left + crop_w]


def to_normalized_tensor(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32, ``(x / 255 - mean) / std``."""
    import torch  # here, not at the top: demonstration workers resize frames in SimplerEnv's torch-free interpreter

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def preprocess_images(images: list[np.ndarray], size: int) -> dict[str, torch.Tensor]:
    """A batch of RGB frames -> ``{"dino": (B, 3, size, size), "siglip": (B, 3, size, size)}`` float32."""
    resized = np.stack([resize_naive(image, size) for image in images])
    return {
        "dino": to_normalized_tensor(resized, DINO_MEAN, DINO_STD),
        "siglip": to_normalized_tensor(resized, SIGLIP_MEAN, SIGLIP_STD),
    }
