"""Online k-NN accuracy of the pretraining features on a labelled val set (as solo-learn's and
lightly's k-NN callbacks), to watch representation quality, and collapse, during pretraining."""
from typing import Tuple

import torch
from mmengine.dist import collect_results, is_main_process
from mmengine.hooks import Hook
from mmengine.runner import Runner

from ..evaluation.features import extract_features, knn_predict, topk_accuracy
from ..registry import HOOKS
from .hooks import unwrap

FEATURES = ('instance', 'cls')


@HOOKS.register_module()
class KNNEvalHook(Hook):
    """Every ``interval`` epochs (and after the last), embeds a labelled bank and a labelled
    val set with the ``branch`` encoder and logs cosine k-NN top-1/top-5 (DINO's weighted vote)
    as ``knn/top1`` and ``knn/top5``.

    Args:
        bank_dataloader / val_dataloader: dataloader configs whose datasets yield
            ``dict(inputs=uint8 (3, H, W), data_samples=label)`` (``LabelledImageFolder``), at the
            pretraining image size. The model's data preprocessor normalises them. Each rank
            embeds its share (``DefaultSampler``); rank 0 votes, so the bank must fit in its memory
            (a labelled subset such as ``split='10percent'`` keeps it small at ImageNet scale).
        branch: 'teacher' (the EMA encoder, the default) or 'student'.
        feature: 'instance' (after the final norm) or 'cls' (before it).
    """

    priority = 'LOW'

    def __init__(self, bank_dataloader: dict, val_dataloader: dict, interval: int = 1, k: int = 20,
                 temperature: float = 0.07, branch: str = 'teacher', feature: str = 'instance'):
        if branch not in ('teacher', 'student'):
            raise ValueError(f"KNNEvalHook branch must be 'teacher' or 'student', got {branch!r}")
        if feature not in FEATURES:
            raise ValueError(f'KNNEvalHook feature must be one of {FEATURES}, got {feature!r}')
        if interval < 1 or k < 1:
            raise ValueError(f'KNNEvalHook needs interval >= 1 and k >= 1, got {interval} and {k}')
        self.loader_cfgs = dict(bank=bank_dataloader, val=val_dataloader)
        self.interval, self.k, self.temperature = interval, k, temperature
        self.branch, self.feature = branch, feature
        self.loaders = {}

    def before_train(self, runner) -> None:
        # Built before the first epoch so that a wrong data root fails before any compute.
        for name, cfg in self.loader_cfgs.items():
            cfg = dict(cfg)
            cfg.setdefault('sampler', dict(type='DefaultSampler', shuffle=False))
            cfg.setdefault('collate_fn', dict(type='default_collate'))
            self.loaders[name] = Runner.build_dataloader(cfg, seed=runner.seed)
        bank, val = (self.loaders[n].dataset for n in ('bank', 'val'))
        if bank.metainfo['classes'] != val.metainfo['classes']:
            raise ValueError('KNNEvalHook: the bank and val datasets have different classes; give both the '
                             'same classes_prefix.')

    @torch.no_grad()
    def _embed(self, model, name: str) -> Tuple[torch.Tensor, torch.Tensor]:
        loader = self.loaders[name]
        preprocessor = model.data_preprocessor

        def embed(batch):
            images = preprocessor(dict(inputs=batch), False)['inputs']
            return model.forward_features(images, self.branch)[self.feature]
        features, labels = extract_features(embed, ((b['inputs'], b['data_samples']) for b in loader),
                                            progress=False)
        # mmengine's 'gpu' mode gathers through the process group; 'cpu' through a shared temp dir.
        device = 'gpu' if torch.cuda.is_available() else 'cpu'
        gathered = collect_results(list(zip(features, labels.tolist())), len(loader.dataset), device)
        if not is_main_process():
            return None, None
        return torch.stack([f for f, _ in gathered]), torch.tensor([label for _, label in gathered])

    def after_train_epoch(self, runner) -> None:
        if not (self.every_n_epochs(runner, self.interval) or self.is_last_train_epoch(runner)):
            return
        model = unwrap(runner.model)
        was_training = model.training
        model.eval()
        try:
            bank, bank_labels = self._embed(model, 'bank')
            val, val_labels = self._embed(model, 'val')
        finally:
            model.train(was_training)
        if not is_main_process():
            return
        num_classes = len(self.loaders['bank'].dataset.metainfo['classes'])
        scores = knn_predict(bank, bank_labels, val, num_classes, self.k, self.temperature)
        accuracy = topk_accuracy(scores, val_labels, topk=(1, min(5, num_classes)))
        scalars = {f'knn/{name}': value for name, value in accuracy.items()}
        runner.visualizer.add_scalars(scalars, step=runner.iter)
        runner.logger.info(f'Epoch {runner.epoch + 1} k-NN (k={self.k}, {self.branch} {self.feature}, '
                           f'{len(bank)} bank / {len(val)} val images): '
                           + ', '.join(f'{name} {value:.2f}' for name, value in scalars.items()))
