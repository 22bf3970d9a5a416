"""Checks that turn silent segmentation mistakes into clear errors."""
from typing import List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop
from mmseg.registry import HOOKS as MMSEG_HOOKS


def decode_heads(model) -> List:
    """The decode head and auxiliary heads of a (wrapped, TTA) mmseg segmentor."""
    while is_model_wrapper(model) or (hasattr(model, 'module') and not hasattr(model, 'decode_head')):
        model = model.module
    heads = [model.decode_head]
    auxiliary = getattr(model, 'auxiliary_head', None)
    if auxiliary is not None:
        heads += list(auxiliary) if isinstance(auxiliary, torch.nn.ModuleList) else [auxiliary]
    return heads


def _flatten(samples) -> list:
    """Data samples of a batch; test-time augmentation nests one list per augmentation."""
    if isinstance(samples, (list, tuple)):
        return [leaf for item in samples for leaf in _flatten(item)]
    return [samples]


@MMSEG_HOOKS.register_module()
class SegDataCheckHook(Hook):
    """Stops a run whose heads and data disagree, before any compute.

    * before the run: every head's ``num_classes`` must equal the number of
      classes of every dataset the run uses;
    * at every iteration: ground-truth labels must lie in [0, num_classes) or
      equal the ignore index, and the offending label file is named otherwise.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        heads = decode_heads(runner.model)
        for loop_name in ('_train_loop', '_val_loop', '_test_loop'):
            loop = getattr(runner, loop_name, None)
            if not isinstance(loop, BaseLoop):
                continue
            dataset = loop.dataloader.dataset
            classes = dataset.metainfo.get('classes')
            if classes is None:
                continue
            for head in heads:
                if head.num_classes != len(classes):
                    raise ValueError(
                        f'{type(head).__name__}.num_classes={head.num_classes} but the '
                        f'{loop_name.strip("_").replace("_loop", "")} dataset {type(dataset).__name__} has '
                        f'{len(classes)} classes. Set num_classes={len(classes)} in decode_head and '
                        'auxiliary_head (or use the config made for this dataset).')

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        self._check_labels(runner, data_batch)

    def before_val_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        self._check_labels(runner, data_batch)

    def before_test_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        self._check_labels(runner, data_batch)

    @staticmethod
    def _check_labels(runner, data_batch: Optional[dict]) -> None:
        if not data_batch or 'data_samples' not in data_batch:
            return
        head = decode_heads(runner.model)[0]
        for sample in _flatten(data_batch['data_samples']):
            if 'gt_sem_seg' not in sample:
                continue
            labels = sample.gt_sem_seg.data
            bad = labels[(labels >= head.num_classes) & (labels != head.ignore_index)]
            if bad.numel():
                values = sorted(set(bad.unique().tolist()))
                raise ValueError(
                    f'Label file {sample.metainfo.get("seg_map_path", "?")} has values {values[:10]} '
                    f'outside the {head.num_classes} classes (0..{head.num_classes - 1}, ignore '
                    f'{head.ignore_index}). With reduce_zero_label=True a PNG value v becomes v-1 and 0 '
                    'becomes the ignore index; fix the annotation or the dataset/num_classes settings.')
