"""Collapse diagnostics of a set of features.

``feature_std`` is SimSiam's check (the per-dimension std of the l2-normalised rows,
about 1/sqrt(D) when they spread over the sphere, 0 when they are one vector);
``effective_rank`` is RankMe's exp(entropy) of the normalised singular values of the
centred features (1 for a line, D for an isotropic cloud).
"""
import torch

from ..models.extrema import normalized_std


@torch.no_grad()
def feature_std(features: torch.Tensor) -> float:
    return float(normalized_std(features))


@torch.no_grad()
def effective_rank(features: torch.Tensor, eps: float = 1e-12) -> float:
    centred = features.double() - features.double().mean(dim=0)
    singular = torch.linalg.svdvals(centred)
    p = singular / singular.sum().clamp_min(eps)
    entropy = -(p * (p + eps).log()).sum()
    return float(entropy.exp())
