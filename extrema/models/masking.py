"""Extreme multi-masking: K visible-token subsets per image."""
from typing import Optional

import torch


def num_visible(num_tokens: int, mask_ratio: float) -> int:
    """Visible tokens per view, as the official code computes it: int(N * (1 - r)).

    N=196: r=0.8 -> 39, r=0.9 -> 19, r=0.75 -> 49.
    """
    return int(num_tokens * (1 - mask_ratio))


def check_mask_config(num_tokens: int, mask_ratio: float, num_masks: int, disjoint: bool = True) -> int:
    """Validate (r, K) for N tokens and return L; raises ValueError naming the fix."""
    if not 0 <= mask_ratio < 1:
        raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}.')
    if num_masks < 1:
        raise ValueError(f'num_masks must be >= 1, got {num_masks}.')
    keep = num_visible(num_tokens, mask_ratio)
    if keep < 1:
        raise ValueError(f'mask_ratio {mask_ratio} leaves no visible token out of {num_tokens}; '
                         f'use a mask_ratio below {1 - 1 / num_tokens:.4f}.')
    if disjoint and num_masks * keep > num_tokens:
        raise ValueError(
            f'{num_masks} disjoint masks of {keep} visible tokens need {num_masks * keep} tokens, '
            f'but the image has only {num_tokens}. Lower num_masks to <= {num_tokens // keep}, '
            f'raise mask_ratio, or set disjoint_masks=False.')
    return keep


def sample_masks(batch: int, num_tokens: int, mask_ratio: float, num_masks: int,
                 disjoint: bool = True, device=None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Visible-token indices (K, B, L), drawn anew per image.

    Disjoint (the official default): one random permutation per image, view k
    keeps positions [kL, (k+1)L). Otherwise each view has its own permutation.
    Indices are not sorted; positions were added before the gather.
    """
    keep = check_mask_config(num_tokens, mask_ratio, num_masks, disjoint)
    if disjoint:
        noise = torch.rand(batch, num_tokens, device=device, generator=generator)
        perm = noise.argsort(dim=1)[:, :num_masks * keep]  # (B, K*L)
        return perm.view(batch, num_masks, keep).transpose(0, 1).contiguous()
    noise = torch.rand(num_masks, batch, num_tokens, device=device, generator=generator)
    return noise.argsort(dim=2)[:, :, :keep]
