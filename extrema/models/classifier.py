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
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel
from timm.layers import trunc_normal_
from timm.loss import SoftTargetCrossEntropy

from ..checkpoint import EncoderWeights, describe_format, load_file, stored_pixel_normalization
from ..registry import MODELS
from .data_preprocessor import IMAGENET_MEAN, IMAGENET_STD
from .vit import ExtreMAEncoder, ViTTrunk

POOLINGS = ('mean', 'class_attention')


def pixel_statistics(preprocessor: dict, pretrained: Optional[str]) -> dict:
    """``mean`` and ``std`` (0-255 units) for the classifier's preprocessor, and logs their source:
    the config's when it sets both, else the pretraining's stored in ``pretrained``, else ImageNet's.
    Fine-tuning with other statistics than the pretraining shifts every input the encoder sees."""
    given = [name for name in ('mean', 'std') if preprocessor.get(name) is not None]
    if len(given) == 1:
        other = 'std' if given == ['mean'] else 'mean'
        raise ValueError(f'model.data_preprocessor sets {given[0]} but not {other}: set both, or neither to '
                         'normalise with the pretraining statistics stored in model.pretrained.')
    level = 20
    if given:
        mean, std, source = preprocessor['mean'], preprocessor['std'], 'set in model.data_preprocessor'
    else:
        checkpoint = load_file(pretrained, mmap=True) if pretrained else {}
        stored = stored_pixel_normalization(checkpoint)
        if stored is not None:
            (mean, std), source = stored, f'the pretraining statistics stored in {pretrained}'
        else:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
            if not pretrained:
                source = "ImageNet's: no model.pretrained"
            elif describe_format(checkpoint) == 'official':
                source = f"ImageNet's, as the official release {osp.basename(pretrained)} was pretrained"
            else:
                level = 30
                source = (f"ImageNet's: {pretrained} stores no pixel normalisation; set "
                          'model.data_preprocessor.mean/std if it was pretrained with other statistics')
    print_log(f'Classifier pixel normalisation: mean {tuple(mean)}, std {tuple(std)} ({source}).',
              logger='current', level=level)
    return dict(mean=tuple(mean), std=tuple(std))


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
        data_preprocessor: ``ClassifierDataPreprocessor`` config; without ``mean``/``std`` it
            normalises with the statistics ``pretrained`` stores for its pretraining (ImageNet's
            when it stores none or there is no checkpoint), see ``pixel_statistics``.
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
        data_preprocessor.update(pixel_statistics(data_preprocessor, pretrained))
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

    def get_layer_depth(self, param_name: str) -> Tuple[int, int]:
        """(depth, number of depths) for mmpretrain's ``LearningRateDecayOptimWrapperConstructor``,
        as its ``ImageClassifier`` has it: the backbone's rule under ``backbone.``; ``fc_norm`` and
        ``head`` are the top depth (lr scale 1)."""
        return self.backbone.get_layer_depth(param_name, prefix='backbone.')

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


__all__ = ['ExtreMAClassifier']
