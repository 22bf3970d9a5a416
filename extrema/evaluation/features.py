"""Frozen-feature extraction and k-NN classification."""
import time
from typing import Callable, Iterable, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log


@torch.no_grad()
def extract_features(embed: Callable[[torch.Tensor], torch.Tensor], loader: Iterable,
                     device: str = 'cpu', progress: bool = True, total: Optional[int] = None,
                     log_interval: float = 10.) -> Tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D), labels (N,)) over a loader yielding (images, labels).

    With ``progress``, logs the images embedded so far, the rate and, when ``total`` is given
    (or the loader has a dataset), the ETA, every ``log_interval`` seconds and at the end, so a
    long embedding is not silent until it finishes.
    """
    if total is None and hasattr(loader, 'dataset'):
        total = len(loader.dataset)
    features, labels = [], []
    start = last = time.perf_counter()
    done = 0
    for images, targets in loader:
        features.append(embed(images.to(device)).float().cpu())
        labels.append(targets)
        done += len(targets)
        now = time.perf_counter()
        if progress and now - last >= log_interval:
            last = now
            rate = done / (now - start)
            eta = f', ETA {(total - done) / rate:.0f} s' if total else ''
            print_log(f'embedded {done}{f"/{total}" if total else ""} images ({rate:.1f}/s{eta})',
                      logger='current')
    if progress:
        print_log(f'embedded {done} images in {time.perf_counter() - start:.1f} s', logger='current')
    return torch.cat(features), torch.cat(labels)


@torch.no_grad()
def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                num_classes: int, k: int = 20, temperature: float = 0.07,
                chunk: int = 1024) -> torch.Tensor:
    """Class scores (M, C) by cosine k-NN with exp(sim / T) weighted votes (DINO protocol)."""
    train = F.normalize(train_features, dim=1)
    k = min(k, train.shape[0])
    scores = []
    for start in range(0, test_features.shape[0], chunk):
        query = F.normalize(test_features[start:start + chunk], dim=1)
        similarity, index = (query @ train.t()).topk(k, dim=1)
        weights = (similarity / temperature).exp()
        votes = torch.zeros(query.shape[0], num_classes)
        votes.scatter_add_(1, train_labels[index], weights)
        scores.append(votes)
    return torch.cat(scores)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, topk=(1, 5)) -> dict:
    """Top-k accuracies in percent."""
    ranked = scores.topk(max(topk), dim=1).indices
    hits = ranked == labels.view(-1, 1)
    return {f'top{k}': hits[:, :k].any(dim=1).float().mean().item() * 100 for k in topk}
