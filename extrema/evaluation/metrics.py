"""Top-k classification accuracy for the mmengine evaluator."""
from typing import Sequence

import torch
from mmengine.evaluator import BaseMetric

from ..registry import METRICS
from .features import topk_accuracy


def clipped_topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, topk: Sequence[int] = (1, 5)) -> dict:
    """``topk_accuracy`` keyed by the requested k; k above the class count counts every class."""
    clipped = [min(k, scores.shape[1]) for k in topk]
    accuracy = topk_accuracy(scores, labels, topk=clipped)
    return {f'top{k}': accuracy[f'top{c}'] for k, c in zip(topk, clipped)}


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy (%) over the whole evaluation set, logged as ``accuracy/top<k>``.

    Reads ``pred_score`` and ``gt_label`` from the model's predictions. With fewer
    classes than k, top-k counts every class (100%).
    """

    default_prefix = 'accuracy'

    def __init__(self, topk: Sequence[int] = (1, 5), collect_device: str = 'cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        scores = torch.stack([sample['pred_score'] for sample in data_samples]).float().cpu()
        labels = torch.stack([torch.as_tensor(sample['gt_label']) for sample in data_samples]).cpu()
        self.results.append(dict(count=len(labels), **clipped_topk_accuracy(scores, labels, self.topk)))

    def compute_metrics(self, results: list) -> dict:
        total = sum(r['count'] for r in results)
        return {f'top{k}': sum(r[f'top{k}'] * r['count'] for r in results) / total for k in self.topk}
