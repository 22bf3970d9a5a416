"""Linear probe as in the official ``main_lincls.py``.

The frozen feature (by default the teacher's class-attention output without the
final LN) goes through BatchNorm without affine parameters and a Linear layer
(weight N(0, 0.01), bias 0). Only the Linear is trained: SGD, momentum 0.9, no
weight decay, linear warmup from 0 then cosine to 0, per iteration.
"""
import math
from typing import Callable, Iterable, Tuple

import torch
import torch.nn as nn

from .metrics import clipped_topk_accuracy

Batches = Callable[[int], Iterable[Tuple[torch.Tensor, torch.Tensor]]]


class LinearProbeHead(nn.Sequential):

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__(nn.BatchNorm1d(in_dim, affine=False), nn.Linear(in_dim, num_classes))
        nn.init.normal_(self[1].weight, std=0.01)
        nn.init.zeros_(self[1].bias)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """lr factor: linear from 0 over the warmup, then half a cosine to 0."""
    if step < warmup_steps:
        return step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


def train_linear_probe(epoch_batches: Batches, iters_per_epoch: int, in_dim: int, num_classes: int,
                       epochs: int = 90, warmup_epochs: int = 10, lr: float = 0.1, momentum: float = 0.9,
                       device: str = 'cpu') -> LinearProbeHead:
    """Train a probe on ``epoch_batches(epoch)``, which yields (features, labels) batches."""
    if warmup_epochs >= epochs:
        raise ValueError(f'warmup_epochs ({warmup_epochs}) must be smaller than epochs ({epochs}).')
    head = LinearProbeHead(in_dim, num_classes).to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=0.)
    total, warmup = epochs * iters_per_epoch, warmup_epochs * iters_per_epoch
    criterion = nn.CrossEntropyLoss()
    step = 0
    head.train()
    for epoch in range(epochs):
        for features, labels in epoch_batches(epoch):
            for group in optimizer.param_groups:
                group['lr'] = lr * warmup_cosine(step, total, warmup)
            loss = criterion(head(features.to(device)), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    return head.eval()


@torch.no_grad()
def evaluate_linear_probe(head: LinearProbeHead, features: torch.Tensor, labels: torch.Tensor,
                          batch_size: int = 4096) -> dict:
    device = next(head.parameters()).device
    scores = torch.cat([head(chunk.to(device)).float().cpu() for chunk in features.split(batch_size)])
    return clipped_topk_accuracy(scores, labels)
