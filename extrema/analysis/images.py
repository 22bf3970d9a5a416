"""Reading analysis images (failing before any model is loaded) and resizing them."""
import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..data.folder import read_rgb


def load_image(path: str) -> Image.Image:
    """An RGB image, or an error that names the file and what to pass instead."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Image {path!r} does not exist; pass --image with the path of a '
                                'JPEG/PNG file.')
    try:
        return read_rgb(path)
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f'Cannot read image {path!r} ({error}); pass a JPEG/PNG file that Pillow '
                         'can open.') from error


def center_square(image: Image.Image) -> Image.Image:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> uint8 (3, H, W)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def square_input(image: Image.Image, size: int) -> torch.Tensor:
    """Centre square resized to ``size`` (bicubic), uint8 (1, 3, size, size)."""
    return to_tensor(center_square(image).resize((size, size), Image.BICUBIC)).unsqueeze(0)


def crops_input(image: Image.Image, boxes: Sequence[Sequence[float]], size: int) -> torch.Tensor:
    """Boxes (x0, y0, x1, y1) in pixels of ``image``, each resized to ``size``: uint8 (B, 3, size, size)."""
    return torch.stack([to_tensor(image.resize((size, size), Image.BICUBIC, box=tuple(map(float, box))))
                        for box in boxes])


def to_display(images: torch.Tensor) -> np.ndarray:
    """0-255 images (3, H, W) -> uint8 (H, W, 3) for plotting."""
    return images.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
