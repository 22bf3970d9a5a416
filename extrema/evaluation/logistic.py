"""Multinomial L2-regularised logistic regression on frozen features (the MSN protocol).

Features are centred with the training mean and L2-normalised (cyanure's
``preprocess(centering=True, normalize=True)``); the model has no intercept. The
objective is ``sum_i CE(W x_i, y_i) + lambd / 2 * ||W||^2``, MSN's
``logistic_eval.py`` objective (cyanure with ``lambd / n``), so its lambda values
carry over (scikit-learn's ``C`` would be ``1 / lambd``).

The problem is convex; it is solved in float64 with full-batch L-BFGS in PyTorch
on the chosen device (a GPU makes ImageNet-1k sweeps fast), warm-starting each
lambda from the previous, larger one.
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import clipped_topk_accuracy

DEFAULT_LAMBDAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def centre_and_normalise(train: torch.Tensor, test: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    mean = train.mean(dim=0, keepdim=True)
    return F.normalize(train - mean, dim=1), F.normalize(test - mean, dim=1)


def fit_logistic_regression(features: torch.Tensor, labels: torch.Tensor, num_classes: int, lambd: float,
                            max_iter: int = 1000, tol: float = 1e-6,
                            init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Weights W (num_classes, D) minimising the objective above, on ``features.device``.

    Stops when the largest gradient entry of the objective divided by n is below ``tol``.
    """
    if lambd <= 0:
        raise ValueError(f'lambd must be > 0, got {lambd}')
    count = features.shape[0]
    weights = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    if init is not None:
        weights.copy_(init)
    weights.requires_grad_(True)
    optimizer = torch.optim.LBFGS([weights], lr=1, max_iter=max_iter, tolerance_grad=tol,
                                  tolerance_change=1e-12, history_size=20, line_search_fn='strong_wolfe')

    def closure():
        optimizer.zero_grad()
        loss = (F.cross_entropy(features @ weights.t(), labels, reduction='sum')
                + lambd / 2 * weights.pow(2).sum()) / count
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach()


def fit_path(features: torch.Tensor, labels: torch.Tensor, num_classes: int, lambdas: Sequence[float],
             max_iter: int = 1000) -> Dict[float, torch.Tensor]:
    """Weights for every lambda, from the strongest regularisation down, each warm-started."""
    path, weights = {}, None
    for lambd in sorted(lambdas, reverse=True):
        weights = path[lambd] = fit_logistic_regression(features, labels, num_classes, lambd, max_iter,
                                                        init=weights)
    return path


def check_cv_folds(labels: np.ndarray, folds: int) -> None:
    smallest_class = np.bincount(labels)[np.unique(labels)].min()
    if smallest_class < folds:
        raise ValueError(f'{folds}-fold cross-validation needs {folds} images of every class; the smallest '
                         f'class has {smallest_class}. Pass a single lambd or fewer folds.')


def cross_validate_lambda(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                          lambdas: Sequence[float], folds: int = 3, seed: int = 0,
                          max_iter: int = 1000) -> Dict[float, float]:
    """Mean top-1 (%) over stratified folds of the labelled set, for every lambda."""
    from sklearn.model_selection import StratifiedKFold
    numpy_labels = labels.cpu().numpy()
    check_cv_folds(numpy_labels, folds)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    accuracy = {lambd: [] for lambd in lambdas}
    for fit_index, held_index in splitter.split(np.zeros(len(numpy_labels)), numpy_labels):
        fit_index, held_index = torch.from_numpy(fit_index), torch.from_numpy(held_index)
        path = fit_path(features[fit_index], labels[fit_index], num_classes, lambdas, max_iter)
        for lambd, weights in path.items():
            predicted = (features[held_index] @ weights.t()).argmax(dim=1)
            accuracy[lambd].append((predicted == labels[held_index]).float().mean().item() * 100)
    return {lambd: float(np.mean(scores)) for lambd, scores in accuracy.items()}


def logistic_regression_eval(train_features: torch.Tensor, train_labels: torch.Tensor,
                             test_features: torch.Tensor, test_labels: torch.Tensor, num_classes: int,
                             lambdas: Sequence[float] = DEFAULT_LAMBDAS, folds: int = 3, seed: int = 0,
                             max_iter: int = 1000, device: str = 'cpu') -> dict:
    """Top-1/top-5 (%) on the test set; with several lambdas, the one with the best
    cross-validated accuracy on the labelled set is refitted on all of it."""
    train, test = centre_and_normalise(train_features.to(device, torch.float64),
                                       test_features.to(device, torch.float64))
    labels = train_labels.to(device)
    result = {}
    if len(lambdas) > 1:
        result['cv_top1'] = cross_validate_lambda(train, labels, num_classes, lambdas, folds, seed, max_iter)
        lambd = max(result['cv_top1'], key=result['cv_top1'].get)
    else:
        lambd = lambdas[0]
    weights = fit_logistic_regression(train, labels, num_classes, lambd, max_iter)
    scores = (test @ weights.t()).float().cpu()
    result.update(clipped_topk_accuracy(scores, test_labels), lambd=lambd)
    return result
