"""Any checkpoint -> one encoder ready for analysis.

Pretraining checkpoints (ours or official) give the chosen branch with its
class-attention (instance) blocks; backbone files and mmseg segmentation
checkpoints (``backbone.*`` keys) may hold only the self-attention trunk.
"""
import ast
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from ..checkpoint import (detect_format, encoder_state_dict, infer_encoder_config, load_file,
                          report_load, state_dict_of)
from ..models.data_preprocessor import IMAGENET_MEAN, IMAGENET_STD
from ..models.vit import ExtreMAEncoder, ViTTrunk, resolve_arch

MMSEG_PREFIX = 'backbone.'


@dataclass
class LoadedEncoder:
    """An encoder in eval mode and what the analyses need to feed it."""
    encoder: Union[ExtreMAEncoder, ViTTrunk]
    mean: Tuple[float, float, float]  # pixel normalisation, 0-255 units
    std: Tuple[float, float, float]
    checkpoint_format: str  # 'official' | 'extrema' | 'backbone' | 'mmseg'
    branch: str

    @property
    def has_instance_branch(self) -> bool:
        return isinstance(self.encoder, ExtreMAEncoder)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or 0-255 float images (B, 3, H, W) -> model input, on the encoder's device."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return ((images.float() - mean) / std).to(self.device)

    def denormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """Model input -> 0-255 float images, on the CPU."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return inputs.cpu() * std + mean


def require_instance_branch(loaded: LoadedEncoder, analysis: str) -> ExtreMAEncoder:
    if not loaded.has_instance_branch:
        raise ValueError(
            f'{analysis} needs the instance branch (class-attention blocks blocks_token.*), which this '
            f'{loaded.checkpoint_format} checkpoint does not have; segmentation backbones and trunk-only '
            'conversions drop it. Use an ExtreMA pretraining checkpoint (ours or official), or a backbone '
            'converted with its class-attention blocks.')
    return loaded.encoder


def pixel_normalization(checkpoint: dict) -> Tuple[tuple, tuple]:
    """(mean, std) of the training data preprocessor, read from the config text that
    mmengine stores in ``meta['cfg']``; ImageNet statistics when there is none."""
    config_text = checkpoint.get('meta', {}).get('cfg')
    stats = _preprocessor_stats(config_text) if isinstance(config_text, str) else None
    return stats or (IMAGENET_MEAN, IMAGENET_STD)


def _preprocessor_stats(config_text: str) -> Optional[Tuple[tuple, tuple]]:
    """``mean``/``std`` of the first ``data_preprocessor=dict(...)`` in a config text.
    The text is parsed, never executed: loading a checkpoint must not run its code."""
    try:
        tree = ast.parse(config_text)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == 'data_preprocessor':
            value = node.value
        elif isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'data_preprocessor'
                                                  for t in node.targets):
            value = node.value
        else:
            continue
        fields = {k.arg: k.value for k in getattr(value, 'keywords', [])}
        try:
            return tuple(tuple(float(v) for v in ast.literal_eval(fields[name])) for name in ('mean', 'std'))
        except (KeyError, ValueError, TypeError):
            continue
    return None


def _unwrap_mmseg(checkpoint: dict) -> Tuple[dict, bool]:
    """An mmseg segmentation checkpoint as a backbone checkpoint (``backbone.`` stripped)."""
    state = state_dict_of(checkpoint)
    if not any(k.startswith(MMSEG_PREFIX) for k in state):
        return checkpoint, False
    backbone = {k[len(MMSEG_PREFIX):]: v for k, v in state.items() if k.startswith(MMSEG_PREFIX)}
    return dict(checkpoint, state_dict=backbone), True


def load_encoder(path: str, branch: str = 'teacher', num_heads: Optional[int] = None,
                 device: str = 'cpu') -> LoadedEncoder:
    """The ``branch`` encoder of any ExtreMA checkpoint, in eval mode.

    An ``ExtreMAEncoder`` (without projector) when the class-attention keys are
    present, else a ``ViTTrunk``. Architecture comes from ``meta['extrema_config']``
    (or a converted backbone's ``meta['encoder_config']``) when stored, else from
    tensor shapes (``num_heads`` then assumes 64-d heads unless given).
    """
    checkpoint = load_file(path)
    checkpoint, is_mmseg = _unwrap_mmseg(checkpoint)
    fmt = detect_format(checkpoint)
    state = encoder_state_dict(checkpoint, branch)
    config = infer_encoder_config(state)
    meta = checkpoint.get('meta', {})
    stored_arch = (meta.get('extrema_config') or meta.get('encoder_config') or {}).get('arch')
    rel_pos_table = state.get('blocks.0.attn.relative_position_bias_table')
    arch = resolve_arch(stored_arch) if stored_arch is not None else dict(config['arch'])
    if stored_arch is None and rel_pos_table is not None:
        arch['num_heads'] = rel_pos_table.shape[1]  # one bias column per head
    if num_heads is not None:
        arch['num_heads'] = num_heads
    kwargs = dict(arch=arch, img_size=config['img_size'], patch_size=config['patch_size'],
                  in_chans=config['in_chans'], mlp_ratio=config['mlp_ratio'],
                  qkv_bias='blocks.0.attn.qkv.bias' in state)
    dropped = {k for k in state if k.startswith('head.')}
    if config['num_class_attn_blocks']:
        # The projector is not analysed: an empty head makes ``projection`` = ``instance``.
        encoder = ExtreMAEncoder(num_class_attn_blocks=config['num_class_attn_blocks'], proj_layers=0,
                                 **kwargs)
    else:
        encoder = ViTTrunk(use_rel_pos_bias=rel_pos_table is not None, **kwargs)
        dropped |= {k for k in state if k.startswith(('cls_token', 'norm.'))}
    weights = {k: v for k, v in state.items() if k not in dropped}
    report_load(encoder, weights, strict=False, name=f'{branch} encoder', ignored=dropped)
    mean, std = pixel_normalization(checkpoint)
    return LoadedEncoder(encoder.to(device).eval(), mean, std, 'mmseg' if is_mmseg else fmt, branch)


def check_input_size(encoder: ViTTrunk, img_size: int) -> None:
    """Fail before compute when the encoder cannot take ``img_size`` inputs."""
    grid = encoder.check_img_size((img_size, img_size))
    window = encoder.blocks[0].attn.window_size
    if window is not None and tuple(window) != grid:
        raise ValueError(f'This encoder has relative position biases for a {window[0]}x{window[1]} grid '
                         f'({window[0] * encoder.patch_size} px); --img-size {img_size} gives '
                         f'{grid[0]}x{grid[1]}. Use --img-size {window[0] * encoder.patch_size}.')
