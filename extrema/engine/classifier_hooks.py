"""Checks of the fine-tuning runs that turn a silent mistake into an error before the first step."""
from mmengine.hooks import Hook

from ..registry import HOOKS
from .hooks import unwrap


@HOOKS.register_module()
class ClassCountCheckHook(Hook):
    """Stops a run before its first step when the dataset's classes do not match the head."""

    def before_train(self, runner) -> None:
        self._check(runner, runner.train_dataloader, 'train_dataloader')

    def before_val(self, runner) -> None:
        self._check(runner, runner.val_dataloader, 'val_dataloader')

    def before_test(self, runner) -> None:
        self._check(runner, runner.test_dataloader, 'test_dataloader')

    @staticmethod
    def _check(runner, loader, name: str) -> None:
        model = unwrap(runner.model)
        classes = getattr(loader.dataset, 'metainfo', {}).get('classes')
        if classes is not None and len(classes) != model.num_classes:
            raise ValueError(f'{name}.dataset has {len(classes)} classes but model.num_classes is '
                             f'{model.num_classes}. Set model.num_classes={len(classes)} or point the '
                             'dataset at the right folder.')
