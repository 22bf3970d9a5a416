"""End-to-end fine-tuning classifier for ImageNet and the low-label subsets.

The model of the official ``finetune/modeling_finetune.py``: the ViT trunk with no
[cls] token, mean-pooled patch tokens, ``fc_norm`` (LayerNorm) and a linear
``head`` (trunc-normal 0.02 scaled by ``init_scale``). With
``pooling='class_attention'`` the pretrained class-attention blocks and final LN
produce the feature instead (the instance representation), and ``fc_norm`` is
not used.

The trunk is ``backbone`` so that ``LayerDecayOptimWrapperConstructor`` finds
``backbone.blocks.<i>``; the class-attention blocks, ``fc_norm`` and ``head`` sit
above the last block (lr scale 1).
"""
import os.path as osp
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.data.random_erasing import RandomErasing
from timm.layers import trunc_normal_
from timm.loss import SoftTargetCrossEntropy

from ..checkpoint import EncoderWeights
from ..registry import HOOKS, MODELS
from .data_preprocessor import IMAGENET_MEAN, IMAGENET_STD, NormalizeDataPreprocessor
from .vit import ExtreMAEncoder, ViTTrunk

POOLINGS = ('mean', 'class_attention')


@MODELS.register_module()
class ClassifierDataPreprocessor(NormalizeDataPreprocessor):
    """uint8 images -> normalised floats on the device; labels -> training targets.

    In training, random erasing (timm ``RandomErasing`` kwargs) and Mixup/CutMix
    (timm ``Mixup`` kwargs) run on the device, as timm's prefetcher does, and the
    targets become soft (B, num_classes) with ``label_smoothing``. In evaluation the
    labels stay integer class indices.
    """

    def __init__(self, num_classes: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, label_smoothing: float = 0.1,
                 mixup: Optional[dict] = None, random_erasing: Optional[dict] = None,
                 non_blocking: bool = True):
        super().__init__(mean, std, non_blocking)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.mixup = (Mixup(**mixup, label_smoothing=label_smoothing, num_classes=num_classes)
                      if mixup else None)
        self.random_erasing = dict(random_erasing) if random_erasing else None

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        images = self.normalize(self.images_of(data))
        labels = data['data_samples']
        if not training:
            return dict(inputs=images, data_samples=labels)
        if self.random_erasing:
            images = RandomErasing(**self.random_erasing, device=images.device)(images)
        if self.mixup is None:
            return dict(inputs=images, data_samples=mixup_target(labels, self.num_classes,
                                                                 smoothing=self.label_smoothing))
        if images.shape[0] % 2:
            raise ValueError(f'Mixup/CutMix needs an even batch, got {images.shape[0]} images. Use an even '
                             'train_dataloader.batch_size with drop_last=True, or set '
                             'model.data_preprocessor.mixup=None.')
        images, targets = self.mixup(images, labels)
        return dict(inputs=images, data_samples=targets)


@MODELS.register_module()
class ExtreMAClassifier(BaseModel):
    """ViT classifier initialised from an ExtreMA encoder.

    Args:
        num_classes: size of the linear head; must equal the dataset's class count.
        arch, img_size, patch_size, in_chans, mlp_ratio: the trunk (as ``ViTTrunk``).
        drop_path_rate: stochastic depth, linear over the blocks (official FT: 0.2).
        pooling: 'mean' (official FT) or 'class_attention' (keep the pretrained
            class-attention blocks and final LN; classify from the instance output).
        init_scale: the head's trunc-normal(0.02) init is multiplied by it.
        pretrained: checkpoint in any format (official, ours, backbone, mmseg, mmpretrain); loaded by
            ``init_weights``, i.e. when the Runner starts training.
        pretrained_branch: 'student' (official FT) or 'teacher' (the EMA encoder).
        strict_load: fail on a missing or unexpected key. Weights the model does
            not use (class-attention branch under mean pooling, projector) are
            dropped on purpose and listed as ignored.
    """

    def __init__(self, num_classes: int, arch: Union[str, dict] = 'base', img_size: int = 224,
                 patch_size: int = 16, in_chans: int = 3, mlp_ratio: float = 4.,
                 drop_path_rate: float = 0.1, pooling: str = 'mean', num_class_attn_blocks: int = 2,
                 layer_scale_init: float = 0.1, init_scale: float = 0.001,
                 pretrained: Optional[str] = None, pretrained_branch: str = 'student',
                 strict_load: bool = True, data_preprocessor: Optional[dict] = None):
        if pooling not in POOLINGS:
            raise ValueError(f'pooling must be one of {POOLINGS}, got {pooling!r}')
        if pretrained and not osp.isfile(pretrained):
            raise FileNotFoundError(f'model.pretrained={pretrained!r} does not exist. Pass a checkpoint '
                                    '(ExtreMA official or ours, backbone file, mmpretrain ViT), e.g. '
                                    '--cfg-options model.pretrained=PATH, or model.pretrained=None to '
                                    'train from scratch.')
        if pretrained_branch not in ('student', 'teacher'):
            raise ValueError(f"pretrained_branch must be 'student' or 'teacher', got {pretrained_branch!r}")
        data_preprocessor = dict(data_preprocessor or dict(type='ClassifierDataPreprocessor'))
        if data_preprocessor.setdefault('num_classes', num_classes) != num_classes:
            raise ValueError(f'data_preprocessor.num_classes={data_preprocessor["num_classes"]} differs from '
                             f'the head num_classes={num_classes}; set only model.num_classes.')
        super().__init__(data_preprocessor=MODELS.build(dict(data_preprocessor, _scope_='extrema')))
        self.num_classes = num_classes
        self.pooling = pooling
        self.pretrained = pretrained
        self.pretrained_branch = pretrained_branch
        self.strict_load = strict_load
        trunk_cfg = dict(arch=arch, img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                         mlp_ratio=mlp_ratio, drop_path_rate=drop_path_rate)
        if pooling == 'mean':
            self.backbone = ViTTrunk(**trunk_cfg)
            self.backbone.init_trunk_weights()
            self.fc_norm = nn.LayerNorm(self.backbone.embed_dim, eps=1e-6)
        else:
            self.backbone = ExtreMAEncoder(**trunk_cfg, num_class_attn_blocks=num_class_attn_blocks,
                                           layer_scale_init=layer_scale_init, proj_layers=0)
        # Official fine-tuning: pos_embed is learnable (layer id 0, no weight decay), starting from the
        # sin-cos table; the key stays 'backbone.pos_embed', so files with the fixed buffer still load.
        self.backbone.pos_embed = nn.Parameter(self.backbone.pos_embed)
        self.head = nn.Linear(self.backbone.embed_dim, num_classes)
        trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight.mul_(init_scale)

    def init_weights(self) -> None:
        """Loads ``pretrained``; the fresh init (official) happens at construction."""
        if self.pretrained:
            self.load_pretrained(self.pretrained, self.pretrained_branch, self.strict_load)

    def load_pretrained(self, path: str, branch: str = 'student', strict: bool = True):
        """Load one encoder of ``path`` (any format, ``extrema.checkpoint``) into the backbone;
        returns (missing, unexpected)."""
        weights = EncoderWeights.read(path, branch)
        weights.check_trunk(self.backbone, 'classifier',
                            'Set model.arch=dict(embed_dim=..., depth=..., num_heads=...), model.patch_size, '
                            'model.in_chans and model.mlp_ratio to match the checkpoint.')
        class_attention = self.pooling == 'class_attention'
        if class_attention and not weights.has_class_attention:
            raise ValueError(f'{path} has no class-attention blocks (blocks_token.*), so '
                             "pooling='class_attention' cannot be used; use pooling='mean'.")
        return weights.load_into(self.backbone, class_attention, strict=strict,
                                 name=f'classifier backbone ({branch} encoder of {osp.basename(path)})')

    def extract_feat(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C) features before the head."""
        if self.pooling == 'mean':
            tokens = self.backbone.forward_tokens(images)[-1]  # (B, N, C)
            return self.fc_norm(tokens.mean(dim=1))
        return self.backbone.forward_features(images)['instance']

    def forward(self, inputs: torch.Tensor, data_samples: Optional[torch.Tensor] = None,
                mode: str = 'tensor'):
        if mode == 'tensor':
            return self.head(self.extract_feat(inputs))
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise RuntimeError(f"ExtreMAClassifier supports modes 'tensor', 'loss' and 'predict', got {mode!r}")

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict:
        """Soft-target cross-entropy for (B, C) targets (mixup / smoothing), else plain."""
        logits = self.head(self.extract_feat(inputs))
        if targets.ndim == 2:
            return dict(loss=SoftTargetCrossEntropy()(logits, targets))
        return dict(loss=F.cross_entropy(logits, targets))

    def predict(self, inputs: torch.Tensor, labels: Optional[torch.Tensor] = None) -> list:
        """One dict per image: ``pred_score`` (softmax over classes), ``gt_label`` if given."""
        scores = self.head(self.extract_feat(inputs)).softmax(dim=-1)
        if labels is None:
            return [dict(pred_score=score) for score in scores]
        return [dict(pred_score=score, gt_label=label) for score, label in zip(scores, labels)]


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
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        classes = getattr(loader.dataset, 'metainfo', {}).get('classes')
        if classes is not None and len(classes) != model.num_classes:
            raise ValueError(f'{name}.dataset has {len(classes)} classes but model.num_classes is '
                             f'{model.num_classes}. Set model.num_classes={len(classes)} or point the '
                             'dataset at the right folder.')


__all__ = ['ClassCountCheckHook', 'ClassifierDataPreprocessor', 'ExtreMAClassifier']
