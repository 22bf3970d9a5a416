"""Multinomial L2-regularised logistic regression on frozen features (the MSN protocol).

Features are centred with the training mean and L2-normalised (cyanure's
``preprocess(centering=True, normalize=True)``); the model has no intercept. The
objective is ``sum_i CE(W x_i, y_i) + lambd / 2 * ||W||^2``, which is MSN's
``logistic_eval.py`` (cyanure, ``lambd / n`` times the mean loss), so its lambda
values carry over; scikit-learn's ``C`` is ``1 / lambd``.
"""
import warnings
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import clipped_topk_accuracy

DEFAULT_LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def centre_and_normalise(train: torch.Tensor, test: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    mean = train.mean(dim=0, keepdim=True)
    return F.normalize(train - mean, dim=1), F.normalize(test - mean, dim=1)


def fit_logistic_regression(features: np.ndarray, labels: np.ndarray, lambd: float, max_iter: int = 1000,
                            tol: float = 1e-4):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    if lambd <= 0:
        raise ValueError(f'lambd must be > 0, got {lambd}')
    classifier = LogisticRegression(C=1.0 / lambd, fit_intercept=False, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always', ConvergenceWarning)
        classifier.fit(features, labels)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        warnings.warn(f'Logistic regression (lambd={lambd}) stopped at max_iter={max_iter} before '
                      f'reaching tol={tol}; raise max_iter for an exact optimum.')
    return classifier


def class_scores(classifier, features: np.ndarray, num_classes: int) -> torch.Tensor:
    """(N, num_classes) probabilities; classes absent from the training labels score 0."""
    scores = np.zeros((features.shape[0], num_classes), dtype=np.float32)
    scores[:, classifier.classes_] = classifier.predict_proba(features)
    return torch.from_numpy(scores)


def cross_validate_lambda(features: np.ndarray, labels: np.ndarray, lambdas: Sequence[float],
                          folds: int = 3, seed: int = 0, max_iter: int = 1000) -> Dict[float, float]:
    """Mean top-1 (%) over stratified folds of the labelled set, for every lambda."""
    from sklearn.model_selection import StratifiedKFold
    smallest_class = np.bincount(labels)[np.unique(labels)].min()
    if smallest_class < folds:
        raise ValueError(f'{folds}-fold cross-validation needs {folds} images of every class; the smallest '
                         f'class has {smallest_class}. Pass a single lambd or fewer folds.')
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels))
    scores = {}
    for lambd in lambdas:
        accuracy = []
        for fit_index, held_index in splits:
            classifier = fit_logistic_regression(features[fit_index], labels[fit_index], lambd, max_iter)
            accuracy.append((classifier.predict(features[held_index]) == labels[held_index]).mean() * 100)
        scores[lambd] = float(np.mean(accuracy))
    return scores


def logistic_regression_eval(train_features: torch.Tensor, train_labels: torch.Tensor,
                             test_features: torch.Tensor, test_labels: torch.Tensor, num_classes: int,
                             lambdas: Sequence[float] = DEFAULT_LAMBDAS, folds: int = 3, seed: int = 0,
                             max_iter: int = 1000) -> dict:
    """Top-1/top-5 (%) on the test set; with several lambdas, the one with the best
    cross-validated accuracy on the labelled set is refitted on all of it."""
    train, test = centre_and_normalise(train_features.float(), test_features.float())
    train, test = train.numpy(), test.numpy()
    labels = train_labels.numpy()
    result = {}
    if len(lambdas) > 1:
        result['cv_top1'] = cross_validate_lambda(train, labels, lambdas, folds, seed, max_iter)
        lambd = max(result['cv_top1'], key=result['cv_top1'].get)
    else:
        lambd = lambdas[0]
    classifier = fit_logistic_regression(train, labels, lambd, max_iter)
    result.update(clipped_topk_accuracy(class_scores(classifier, test, num_classes), test_labels), lambd=lambd)
    return result
