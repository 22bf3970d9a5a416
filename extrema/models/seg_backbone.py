"""The ExtreMA trunk as an mmsegmentation backbone.

As the official transfer recipe says, no [cls] token enters at the input and the
class-attention (instance) blocks are left out: the backbone is patch embedding,
positional embedding and the self-attention blocks, and it returns the patch
tokens of ``out_indices`` as NCHW maps for a neck such as ``Feature2Pyramid``.
"""
import copy
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS as MMSEG_MODELS

from ..checkpoint import EncoderWeights
from .vit import ViTTrunk

REL_POS_TABLE = 'relative_position_bias_table'


@MMSEG_MODELS.register_module()
class ExtreMAViT(ViTTrunk, BaseModule):
    """ExtreMA ViT trunk returning multi-level feature maps.

    Args:
        arch: 'deit-tiny' | 'small' | 'base' | 'large' | dict(embed_dim, depth, num_heads).
        img_size: the training crop. The sin-cos table is built for its grid
            (512 / 16 -> 32x32); a checkpoint's table is resized bicubically to it.
        patch_size, in_channels, mlp_ratio, qkv_bias: as in pretraining.
        drop_path_rate: stochastic depth, linear over the blocks.
        use_rel_pos_bias: a zero-initialised relative position bias table per
            block (MAE/CAE transfer recipe). Inputs must then be ``img_size``
            (use slide inference with that crop).
        out_indices: blocks whose outputs are returned, (B, C, H/p, W/p) each.
        pretrained: shorthand for ``init_cfg=dict(type='Pretrained', checkpoint=...)``,
            so that mmseg's ``model.pretrained`` works.
        init_cfg: None (official random init) or ``dict(type='Pretrained',
            checkpoint=PATH, branch='student'|'teacher', strict=False)``. The
            checkpoint may be our pretraining checkpoint, a backbone file from
            ``tools/convert_checkpoint.py`` or an official ExtreMA release.

    The positional embedding is learnable during transfer and starts from the
    (resized) sin-cos table, as in the official fine-tuning code.
    """

    def __init__(self, arch: Union[str, dict] = 'base', img_size: Union[int, Sequence[int]] = 512,
                 patch_size: int = 16, in_channels: int = 3, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, drop_path_rate: float = 0.1, use_rel_pos_bias: bool = False,
                 out_indices: Sequence[int] = (3, 5, 7, 11), pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(arch, img_size, patch_size, in_channels, mlp_ratio, qkv_bias,
                         drop_path_rate, use_rel_pos_bias)
        self.init_cfg = self._resolve_init_cfg(pretrained, init_cfg)
        self.out_indices = self._check_out_indices(out_indices)
        self.use_rel_pos_bias = use_rel_pos_bias
        table = self.pos_embed
        del self.pos_embed  # the trunk's buffer becomes a parameter
        self.pos_embed = nn.Parameter(table)

    @staticmethod
    def _resolve_init_cfg(pretrained: Optional[str], init_cfg: Optional[dict]) -> Optional[dict]:
        if isinstance(init_cfg, (list, tuple)):
            raise TypeError('ExtreMAViT takes one init_cfg dict, not a list.')
        init_cfg = copy.deepcopy(init_cfg)
        if init_cfg is not None and init_cfg.get('type') != 'Pretrained':
            raise ValueError(f'ExtreMAViT supports init_cfg=None (random init) or '
                             f"dict(type='Pretrained', checkpoint=PATH, branch='student', strict=False); "
                             f'got {init_cfg}.')
        if pretrained is not None:
            init_cfg = dict(init_cfg or dict(type='Pretrained'), checkpoint=pretrained)
        return init_cfg

    def _check_out_indices(self, out_indices: Sequence[int]) -> Tuple[int, ...]:
        out_indices = tuple(int(i) for i in out_indices)
        if not out_indices or any(not 0 <= i < self.depth for i in out_indices) \
                or list(out_indices) != sorted(set(out_indices)):
            raise ValueError(f'out_indices must be increasing block indices in [0, {self.depth}) for a '
                             f'depth-{self.depth} trunk; got {out_indices}.')
        return out_indices

    def init_weights(self) -> None:
        if self.init_cfg is None:
            self.init_trunk_weights()
            print_log('ExtreMAViT: no pretrained checkpoint (init_cfg=None), random initialisation.',
                      logger='current', level=30)
        else:
            options = {k: v for k, v in self.init_cfg.items() if k != 'type'}
            unknown = set(options) - {'checkpoint', 'branch', 'strict'}
            if unknown:
                raise ValueError(f'ExtreMAViT init_cfg: unknown keys {sorted(unknown)}; use checkpoint, '
                                 'branch and strict.')
            if not options.get('checkpoint'):
                raise ValueError(
                    'ExtreMAViT: init_cfg is Pretrained but no checkpoint is set. Pass '
                    '--cfg-options model.pretrained=PATH (or model.backbone.init_cfg.checkpoint=PATH), '
                    'or set model.backbone.init_cfg=None to train from random initialisation.')
            self.load_pretrained(**options)
        self._is_init = True

    def load_pretrained(self, checkpoint: str, branch: str = 'student', strict: bool = False
                        ) -> Tuple[list, list]:
        """Load the trunk of ``branch`` from a checkpoint of any format (``extrema.checkpoint``).

        Prints loaded / missing / unexpected / ignored keys. Raises if the
        architecture differs, if nothing loads, and under ``strict`` if a key is
        missing or unexpected (the new relative position tables excepted).
        """
        weights = EncoderWeights.read(checkpoint, branch)
        weights.check_trunk(self, 'backbone config',
                            'Pick the config of the pretrained arch (e.g. upernet_extrema-s/-b/-l).')
        missing, unexpected = weights.load_into(self, class_attention=False,
                                                name=f'ExtreMAViT ({branch} of {checkpoint})')
        new_tables = [k for k in missing if k.endswith(REL_POS_TABLE)]
        missing = [k for k in missing if not k.endswith(REL_POS_TABLE)]
        if new_tables:
            print_log(f'ExtreMAViT: {len(new_tables)} relative position bias tables are new '
                      '(zero-initialised).', logger='current')
        if strict and (missing or unexpected):
            raise KeyError(f'Strict load of {checkpoint!r} failed: missing {missing[:10]}, '
                           f'unexpected {unexpected[:10]}.')
        return missing, unexpected

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        grid = self.check_img_size(x.shape[-2:])
        if self.use_rel_pos_bias and grid != self.grid_size:
            raise ValueError(
                f'ExtreMAViT with relative position bias is built for {self.img_size[0]}x'
                f'{self.img_size[1]} inputs and got {x.shape[-2]}x{x.shape[-1]}. Use slide inference '
                f'with crop_size={self.img_size} and pad test images to at least that size '
                '(data_preprocessor.test_cfg=dict(size=crop_size)).')
        tokens = self.forward_tokens(x)
        batch = x.shape[0]
        return tuple(tokens[i].transpose(1, 2).reshape(batch, self.embed_dim, *grid)
                     for i in self.out_indices)
