"""Colour augmentation of a whole batch on its device, one random draw per image.

The same transforms as torchvision's per-image ``RandomApply(ColorJitter)``,
``RandomGrayscale``, ``GaussianBlur`` and ``RandomSolarize``, with the same
parameter distributions (including ColorJitter's random order of its four
adjustments per image), but on float images in [0, 1] without rounding to uint8
between steps. The random draws are made on the CPU and copied to the device in
one non-blocking transfer per tensor.
"""
from functools import partial
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2, as PIL and torchvision


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma."""
    r, g, b = images.unbind(1)
    return (r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]).unsqueeze(1)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue by ``shift`` (in turns, per image), keeping S and V."""
    r, g, b = images.unbind(1)
    min_c, max_c = torch.aminmax(images, dim=1)
    chroma = max_c - min_c
    safe_chroma = torch.where(chroma == 0, torch.ones_like(chroma), chroma)
    rc, gc, bc = ((max_c.unsqueeze(1) - images) / safe_chroma.unsqueeze(1)).unbind(1)
    hue_sixths = torch.where(max_c == r, bc - gc, torch.where(max_c == g, 2 + rc - bc, 4 + gc - rc))
    hue = torch.remainder(hue_sixths / 6 + shift.view(-1, 1, 1), 1)
    # HSV -> RGB: channel n in (5, 3, 1) is V - C * clamp(min(k, 4 - k), 0, 1), k = (n + 6H) mod 6.
    offsets = torch.tensor([5., 3., 1.], device=images.device).view(1, 3, 1, 1)
    k = torch.remainder(offsets + 6 * hue.unsqueeze(1), 6)
    return max_c.unsqueeze(1) - chroma.unsqueeze(1) * torch.minimum(k, 4 - k).clamp_(0, 1)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image, reflect padding (as torchvision)."""
    n, c, h, w = images.shape
    half = (kernel_size - 1) / 2
    x = torch.linspace(-half, half, kernel_size, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma.view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n*c, k)
    pad = kernel_size // 2
    flat = F.pad(images.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode='reflect')
    flat = F.conv2d(flat, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    return flat.view(n, c, h, w)


def where_rows(mask: torch.Tensor, fn: Callable, x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
    """``x`` with ``fn(x, *args)`` in the rows (images) where ``mask`` is set.

    On CPU only those rows are computed. Elsewhere, and under torch.compile, every
    row is computed and the result selected, so that no shape depends on the data
    (no device sync, one compiled graph).
    """
    if x.device.type == 'cpu' and not torch.compiler.is_compiling():
        rows = mask.nonzero().flatten()
        if len(rows) == 0:
            return x
        return x.index_copy(0, rows, fn(x.index_select(0, rows), *(a.index_select(0, rows) for a in args)))
    return torch.where(mask.view(-1, 1, 1, 1), fn(x, *args), x)


def jitter_step(images: torch.Tensor, op: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """One position of ColorJitter's random order: image i gets adjustment ``op[i]``
    (0 brightness, 1 contrast, 2 saturation, 3 hue, -1 none) with ``factor[i]``.

    Brightness, contrast and saturation are one blend a*x + b*mean(gray) + c*gray.
    """
    gray = to_grayscale(images)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    f = factor.view(-1, 1, 1, 1)
    op = op.view(-1, 1, 1, 1)
    zero = torch.zeros_like(f)
    scale = torch.where((op >= 0) & (op <= 2), f, torch.ones_like(f))
    blended = (images * scale + mean * torch.where(op == 1, 1 - f, zero)
               + gray * torch.where(op == 2, 1 - f, zero)).clamp_(0, 1)
    return where_rows(op.view(-1) == 3, adjust_hue, blended, f)  # blended == images there


class BatchColorAugment:
    """RandomApply(ColorJitter(brightness, contrast, saturation, hue), jitter_prob),
    RandomGrayscale(grayscale_prob), then optionally RandomApply(GaussianBlur,
    blur_prob) and RandomSolarize(128/255, solarize_prob), per image of a batch.

    Call it on float images in [0, 1], (N, 3, H, W); it returns a new tensor.
    ``draw`` + ``apply`` split the call, so that ``apply`` can run inside a
    compiled function (``TwoViewDataPreprocessor`` does that on CUDA).
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.2,
                 hue: float = 0.1, jitter_prob: float = 0.8, grayscale_prob: float = 0.2,
                 blur_prob: float = 0., blur_sigma: Sequence[float] = (0.1, 2.0),
                 blur_kernel_size: int = 23, solarize_prob: float = 0.,
                 solarize_threshold: float = 128 / 255):
        if not 0 <= hue <= 0.5:
            raise ValueError(f'hue must be in [0, 0.5], got {hue}')
        if blur_kernel_size % 2 == 0:
            raise ValueError(f'blur_kernel_size must be odd, got {blur_kernel_size}')
        self.ranges = ((max(0., 1 - brightness), 1 + brightness), (max(0., 1 - contrast), 1 + contrast),
                       (max(0., 1 - saturation), 1 + saturation), (-hue, hue))
        self.jitter_prob = jitter_prob
        self.grayscale_prob = grayscale_prob
        self.blur_prob = blur_prob
        self.blur_sigma = tuple(blur_sigma)
        self.blur_kernel_size = blur_kernel_size
        self.solarize_prob = solarize_prob
        self.solarize_threshold = solarize_threshold

    def sample_params(self, batch: int, generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """The random draws for ``batch`` images, on the CPU."""
        def uniform(low, high):
            return torch.empty(batch).uniform_(low, high, generator=generator)

        def coin(p):
            return torch.rand(batch, generator=generator) < p

        return dict(jitter=coin(self.jitter_prob),
                    order=torch.rand(batch, 4, generator=generator).argsort(dim=1),
                    factors=torch.stack([uniform(*r) for r in self.ranges], dim=1),
                    grayscale=coin(self.grayscale_prob),
                    blur=coin(self.blur_prob), sigma=uniform(*self.blur_sigma),
                    solarize=coin(self.solarize_prob))

    def apply(self, images: torch.Tensor, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The augmentation with given draws (``params`` on the images' device)."""
        x = images
        for step in range(4):
            op = params['order'][:, step]
            factor = params['factors'].gather(1, op.view(-1, 1)).view(-1)
            x = jitter_step(x, torch.where(params['jitter'], op, -1), factor)
        x = torch.where(params['grayscale'].view(-1, 1, 1, 1), to_grayscale(x).expand_as(x), x)
        if self.blur_prob > 0:
            x = where_rows(params['blur'], partial(gaussian_blur, kernel_size=self.blur_kernel_size),
                           x, params['sigma'])
        if self.solarize_prob > 0:
            solarize = params['solarize'].view(-1, 1, 1, 1) & (x >= self.solarize_threshold)
            x = torch.where(solarize, 1 - x, x)
        return x

    def draw(self, batch: int, device: torch.device,
             generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """``sample_params`` moved to ``device``: one non-blocking copy per tensor,
        from pinned memory on CUDA, so the host does not wait for the device."""
        params = self.sample_params(batch, generator)
        if device.type == 'cpu':
            return params
        pin = device.type == 'cuda'
        return {k: (v.pin_memory() if pin else v).to(device, non_blocking=True) for k, v in params.items()}

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.apply(images, self.draw(images.shape[0], images.device, generator))
