"""The ExtreMA encoders as timm models, so the backbone drops into any timm pipeline.

    import extrema, timm
    model = timm.create_model('extrema_vit_base_patch16', pretrained=True, num_classes=10,
                              pretrained_cfg_overlay=dict(file='extrema_mask08x5_color_1k_300ep.pth'))

``pretrained=True`` reads the file named by the pretrained config's ``file`` (any of our
checkpoint formats: official release, our pretraining checkpoint, backbone, mmseg, mmpretrain)
through ``extrema.checkpoint.EncoderWeights``, the student encoder unless
``pretrained_branch='teacher'``. No weights are hosted, so there is no download.

timm's API: ``forward_features`` gives the last block's patch tokens (B, N, C) (the trunk has no
[cls] token and no final token norm); ``forward_head`` pools them with ``global_pool='token'``
(the pretrained class-attention blocks and final LN: the instance representation) or ``'avg'``
(mean of the tokens and a fresh ``fc_norm``, the official fine-tuning pooling), then the
classifier ``head``; ``reset_classifier`` replaces it. As in the official fine-tuning,
``pos_embed`` is learnable.
"""
from typing import Optional

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ..checkpoint import EncoderWeights
from .vit import ExtreMAEncoder

POOLS = ('token', 'avg', '')


class ExtreMATimmViT(ExtreMAEncoder):
    """The ExtreMA encoder with timm's classifier interface. ``head`` is the classifier here
    (the pretraining projector is not part of this model)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 global_pool: str = 'token', embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4., qkv_bias: bool = True, num_class_attn_blocks: int = 2,
                 layer_scale_init: float = 0.1, drop_rate: float = 0., drop_path_rate: float = 0.):
        if global_pool not in POOLS:
            raise ValueError(f'global_pool must be one of {POOLS}, got {global_pool!r}')
        super().__init__(dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads), img_size, patch_size,
                         in_chans, mlp_ratio, qkv_bias, drop_path_rate, num_class_attn_blocks,
                         layer_scale_init, proj_layers=0)
        self.pos_embed = nn.Parameter(self.pos_embed)
        self.num_features = self.head_hidden_size = embed_dim
        self.global_pool = global_pool
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)  # for 'avg' (official fine-tuning)
        self.head_drop = nn.Dropout(drop_rate)
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            if global_pool not in POOLS:
                raise ValueError(f'global_pool must be one of {POOLS}, got {global_pool!r}')
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def get_classifier(self) -> nn.Module:
        return self.head

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {'pos_embed', 'cls_token'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's layer grouping (``param_groups_layer_decay``): the class-attention blocks, their
        cls_token and the norms fall in the last group with the classifier, as in
        ``layer_depth.layer_id``."""
        return dict(stem=r'^patch_embed|^pos_embed', blocks=r'^blocks\.(\d+)')

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(x)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'token':
            x = self.norm(self.forward_instance(x))
        elif self.global_pool == 'avg':
            x = self.fc_norm(x.mean(dim=1))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _load_checkpoint(model: ExtreMATimmViT, path: str, branch: str) -> None:
    """Load the trunk and class-attention branch of ``path`` (any of our formats); only the fresh
    classifier and fc_norm may be missing."""
    weights = EncoderWeights.read(path, branch)
    weights.check_trunk(model, 'timm model', 'Create the timm model of that size (e.g. '
                        'extrema_vit_base_patch16), or pass embed_dim/depth/num_heads/patch_size to create_model.')
    if not weights.has_class_attention and model.global_pool == 'token':
        raise ValueError(f"{path} has no class-attention blocks, so global_pool='token' has nothing to pool "
                         "with; create the model with global_pool='avg'.")
    missing, _ = weights.load_into(model, class_attention=weights.has_class_attention, strict=False,
                                   name=f'timm {type(model).__name__} ({branch} encoder of {path})')
    unexpected_missing = [k for k in missing if not k.startswith(('head.', 'fc_norm.'))
                          and (weights.has_class_attention or not k.startswith(('cls_token', 'blocks_token.',
                                                                                'norm.')))]
    if unexpected_missing:
        raise KeyError(f'{path} left encoder weights of the timm model unloaded: {unexpected_missing[:10]}.')
    model.pretrained_cfg = dict(model.pretrained_cfg, file=path, mean=tuple(m / 255 for m in weights.mean),
                                std=tuple(s / 255 for s in weights.std))
    model.default_cfg = model.pretrained_cfg


def _create(variant: str, pretrained: bool = False, pretrained_branch: str = 'student', **kwargs):
    model = build_model_with_cfg(ExtreMATimmViT, variant, pretrained=False, **kwargs)
    # timm's data config reads the input size here: keep it that of the model as built
    model.pretrained_cfg = model.default_cfg = dict(model.pretrained_cfg, input_size=(3, *model.img_size))
    if pretrained:
        path = model.pretrained_cfg.get('file')
        if not path:
            raise ValueError(f'{variant}: no weights are hosted; name a checkpoint with '
                             "pretrained_cfg_overlay=dict(file=PATH) (ours, an official ExtreMA release, a "
                             'backbone, mmseg or mmpretrain file).')
        _load_checkpoint(model, path, pretrained_branch)
    return model


def _cfg(**kwargs) -> dict:
    return dict(dict(url='', num_classes=1000, input_size=(3, 224, 224), pool_size=None, crop_pct=0.875,
                     interpolation='bicubic', mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                     first_conv='patch_embed.proj', classifier='head', license='apache-2.0',
                     paper_ids='arXiv:2206.04667'), **kwargs)


default_cfgs = generate_default_cfgs({
    'extrema_vit_tiny_patch4_32': _cfg(num_classes=10, input_size=(3, 32, 32), crop_pct=1.0,
                                       mean=(72.9 / 255,) * 3, std=(90. / 255,) * 3),
    'extrema_vit_small_patch16': _cfg(),
    'extrema_vit_base_patch16': _cfg(),
    'extrema_vit_large_patch16': _cfg(),
})


@register_model
def extrema_vit_tiny_patch4_32(pretrained: bool = False, **kwargs) -> ExtreMATimmViT:
    """The tiny CPU model of the toolkit's configs: 192-d, 6 blocks, 3 heads, 4-px patches, 32 px."""
    args = dict(img_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3)
    return _create('extrema_vit_tiny_patch4_32', pretrained, **dict(args, **kwargs))


@register_model
def extrema_vit_small_patch16(pretrained: bool = False, **kwargs) -> ExtreMATimmViT:
    args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6)
    return _create('extrema_vit_small_patch16', pretrained, **dict(args, **kwargs))


@register_model
def extrema_vit_base_patch16(pretrained: bool = False, **kwargs) -> ExtreMATimmViT:
    args = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12)
    return _create('extrema_vit_base_patch16', pretrained, **dict(args, **kwargs))


@register_model
def extrema_vit_large_patch16(pretrained: bool = False, **kwargs) -> ExtreMATimmViT:
    """LayerScale 1e-5 in the class-attention blocks, as the ViT-L pretraining config."""
    args = dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16, layer_scale_init=1e-5)
    return _create('extrema_vit_large_patch16', pretrained, **dict(args, **kwargs))
