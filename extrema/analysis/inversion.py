"""Feature inversion: what the distributed representation of the visible patches keeps.

Pixels are optimised, from the dataset mean, until the last self-attention block's
features of the visible tokens match those of the real image under the same mask
(relative L2), with a small total-variation prior. Masked patches get no signal
from the features (the encoder never sees them); only the prior fills them in.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
from matplotlib.ticker import NullFormatter
from mmengine.logging import print_log
from PIL import Image

from ..models.masking import check_mask_config, sample_masks
from ..models.vit import ViTTrunk
from .figures import PanelFigure, show_image
from .images import square_input, to_display
from .loading import LoadedEncoder, check_input_size

DEFAULT_MASK_RATIOS = (0.5, 0.75, 0.9)
DEFAULT_STEPS = 100  # about a minute for ViT-S at 224 px on 2 idle CPU cores


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels, (B, C, H, W) -> scalar."""
    return ((images[..., 1:, :] - images[..., :-1, :]).pow(2).mean()
            + (images[..., :, 1:] - images[..., :, :-1]).pow(2).mean())


def invert_visible_features(encoder: ViTTrunk, inputs: torch.Tensor, ids_keep: torch.Tensor,
                            init: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                            steps: int = DEFAULT_STEPS, lr: float = 0.1, tv_weight: float = 0.05,
                            log_every: int = 0):
    """Pixels whose visible-token features match those of ``inputs``.

    inputs / init: normalised images (1, 3, H, W); ids_keep: (1, 1, L); low / high:
    per-channel bounds of valid pixels in normalised units. Returns (pixels, relative
    feature error ||f - f*||^2 / ||f*||^2 before each step). The encoder is not modified.
    """
    with torch.no_grad():
        target = encoder.forward_tokens(inputs, ids_keep)[-1]
    target_power = target.pow(2).mean()
    pixels = init.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([pixels], lr=lr)
    losses = []
    for step in range(steps):
        features = encoder.forward_tokens(pixels, ids_keep)[-1]
        feature_error = (features - target).pow(2).mean() / target_power
        loss = feature_error + tv_weight * total_variation(pixels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=[pixels])
        optimizer.step()
        with torch.no_grad():
            pixels.clamp_(low, high)
        losses.append(feature_error.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print_log(f'  step {step:4d}/{steps}: relative feature error {losses[-1]:.4f}', logger='current')
    return pixels.detach(), losses


@dataclass
class Inversion:
    mask_ratio: float
    visible: torch.Tensor  # (L,) visible patch indices, sorted
    reconstruction: torch.Tensor  # 0-255 float (3, H, W)
    losses: List[float]
    visible_psnr: float  # dB, over the visible patches


def patch_mask(visible: torch.Tensor, grid, patch_size: int) -> torch.Tensor:
    """(H, W) bool, True on the pixels of the visible patches."""
    mask = torch.zeros(grid[0] * grid[1], dtype=torch.bool)
    mask[visible] = True
    return mask.view(grid).repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)


def feature_inversion(loaded: LoadedEncoder, image: Image.Image, img_size: Optional[int] = None,
                      mask_ratios: Sequence[float] = DEFAULT_MASK_RATIOS, steps: int = DEFAULT_STEPS,
                      lr: float = 0.1, tv_weight: float = 0.05, seed: int = 0, log_every: int = 0):
    """(uint8 input (3, H, W), [Inversion per mask ratio]). One random mask per ratio (``seed``)."""
    encoder = loaded.encoder
    img_size = img_size or encoder.img_size[0]
    check_input_size(encoder, img_size)
    grid = encoder.check_img_size((img_size, img_size))
    num_patches = grid[0] * grid[1]
    for ratio in mask_ratios:
        check_mask_config(num_patches, ratio, 1)
    if steps < 1:
        raise ValueError(f'steps must be >= 1, got {steps}.')
    pixels = square_input(image, img_size)
    inputs = loaded.normalize(pixels)
    low = loaded.normalize(torch.zeros(1, 3, 1, 1))
    high = loaded.normalize(torch.full((1, 3, 1, 1), 255.))
    init = torch.zeros_like(inputs)  # the dataset mean
    generator = torch.Generator().manual_seed(seed)
    results = []
    for ratio in mask_ratios:
        ids_keep = sample_masks(1, num_patches, ratio, 1, generator=generator)
        print_log(f'Mask ratio {ratio}: {ids_keep.shape[-1]} of {num_patches} patches visible',
                  logger='current')
        recovered, losses = invert_visible_features(encoder, inputs, ids_keep.to(loaded.device), init, low,
                                                    high, steps, lr, tv_weight, log_every)
        reconstruction = loaded.denormalize(recovered)[0].clamp(0, 255)
        visible = ids_keep.view(-1).sort().values
        where = patch_mask(visible, grid, encoder.patch_size)
        error = (reconstruction - pixels[0].float())[:, where].pow(2).mean().item()
        psnr = 10 * np.log10(255 ** 2 / max(error, 1e-10))
        results.append(Inversion(ratio, visible, reconstruction, losses, float(psnr)))
    return pixels[0], results


def plot_inversions(pixels: torch.Tensor, inversions: Sequence[Inversion], mean: Sequence[float],
                    patch_size: int, title: str = '') -> PanelFigure:
    """Top row: the input, then each masked input (masked patches in the mean colour).
    Bottom row: the loss curves, then each reconstruction."""
    figure = PanelFigure(2, 1 + len(inversions))
    show_image(figure.image_axes(0, 0, title or 'input'), to_display(pixels.float()))
    grid = (pixels.shape[1] // patch_size, pixels.shape[2] // patch_size)
    curves = figure.plot_axes(1, 0, 'relative feature error')
    for i, inversion in enumerate(inversions):
        where = patch_mask(inversion.visible, grid, patch_size)
        masked = torch.where(where, pixels.float(), torch.tensor(mean).view(3, 1, 1))
        show_image(figure.image_axes(0, 1 + i, f'mask {inversion.mask_ratio:.0%}: '
                                     f'{len(inversion.visible)} patches visible'), to_display(masked))
        show_image(figure.image_axes(1, 1 + i, f'inverted, visible PSNR {inversion.visible_psnr:.1f} dB'),
                   to_display(inversion.reconstruction))
        curves.plot(inversion.losses, label=f'{inversion.mask_ratio:.0%}', linewidth=1.2)
    curves.set_yscale('log')
    curves.yaxis.set_minor_formatter(NullFormatter())
    curves.set_xlabel('step', fontsize=7, labelpad=1)
    curves.legend(fontsize=7, frameon=False)
    return figure
