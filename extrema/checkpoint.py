"""Checkpoint formats, conversion and loud loading.

Formats understood everywhere in the toolkit:

* ``official``: the released ExtreMA files, ``{'state_dict': {'module.base_encoder.*',
  'module.momentum_encoder.*', 'module.predictor.*'}, 'arch', 'epoch', ...}``;
* ``extrema``: our pretraining checkpoints (mmengine), ``state_dict`` keys ``student.*``,
  ``teacher.*``, ``predictor.*`` and ``meta['extrema_config']``;
* ``backbone``: one encoder's weights from ``tools/convert_checkpoint.py``, bare keys
  (``patch_embed.*``, ``pos_embed``, ``blocks.*``, ``cls_token``, ``blocks_token.*``, ``norm.*``)
  and ``meta['branch']``.
"""
import io
import math
import os
import re
from typing import Dict, Iterable, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

BRANCH_PREFIX = {'official': {'student': 'module.base_encoder.', 'teacher': 'module.momentum_encoder.'},
                 'extrema': {'student': 'student.', 'teacher': 'teacher.'}}
OFFICIAL_TO_OURS = (('module.base_encoder.', 'student.'), ('module.momentum_encoder.', 'teacher.'),
                    ('module.predictor.', 'predictor.'))
# Keys of the instance branch: present in encoder files, unused by dense backbones.
INSTANCE_KEY = re.compile(r'^(cls_token|blocks_token\.|norm\.|head\.)')


def load_file(path: str) -> dict:
    """``torch.load(weights_only=True)`` with errors that say what is wrong."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint {path!r} does not exist.')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # truncated zip, pickle with unsafe globals, not a torch file
        raise RuntimeError(f'Cannot read checkpoint {path!r}: {error}. The file may be truncated '
                           '(an interrupted copy) or not a PyTorch checkpoint.') from error
    if not isinstance(checkpoint, dict):
        raise TypeError(f'Checkpoint {path!r} holds a {type(checkpoint).__name__}, expected a dict.')
    return checkpoint


def state_dict_of(checkpoint: dict) -> Dict[str, torch.Tensor]:
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def detect_format(checkpoint: dict) -> str:
    keys = list(state_dict_of(checkpoint))
    if any(k.startswith('module.base_encoder.') or k.startswith('module.momentum_encoder.') for k in keys):
        return 'official'
    if any(k.startswith('student.') or k.startswith('teacher.') for k in keys):
        return 'extrema'
    if any(k.startswith('blocks.') for k in keys) and 'pos_embed' in keys:
        return 'backbone'
    raise ValueError('Unrecognised checkpoint: expected ExtreMA keys (module.base_encoder.*, student.* '
                     f'or blocks.*); first keys are {keys[:5]}.')


def to_extrema_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """A full ExtreMA state dict (student/teacher/predictor) from an official or our checkpoint."""
    fmt = detect_format(checkpoint)
    state = state_dict_of(checkpoint)
    if fmt == 'extrema':
        return dict(state)
    if fmt != 'official':
        raise ValueError('This is a backbone-only file (one encoder, no projector or predictor); '
                         'a full ExtreMA model needs a pretraining checkpoint.')
    converted = {}
    for key, value in state.items():
        for old, new in OFFICIAL_TO_OURS:
            if key.startswith(old):
                converted[new + key[len(old):]] = value
                break
        else:
            converted[key] = value  # reported as unexpected when loaded
    return converted


def encoder_state_dict(checkpoint: dict, branch: str = 'student') -> Dict[str, torch.Tensor]:
    """One encoder's weights with bare keys, from any format (the projector ``head.*`` included)."""
    if branch not in ('student', 'teacher'):
        raise ValueError(f"branch must be 'student' or 'teacher', got {branch!r}")
    fmt = detect_format(checkpoint)
    state = state_dict_of(checkpoint)
    if fmt == 'backbone':
        stored = checkpoint.get('meta', {}).get('branch')
        if stored is not None and stored != branch:
            print_log(f'Backbone file holds the {stored} encoder; using it although branch={branch!r}.',
                      logger='current', level=30)
        return dict(state)
    prefix = BRANCH_PREFIX[fmt][branch]
    encoder = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not encoder:
        raise KeyError(f'The checkpoint has no {branch} encoder (no keys starting with {prefix!r}).')
    return encoder


def split_instance_keys(state: Dict[str, torch.Tensor]) -> Tuple[dict, dict]:
    """(trunk keys, instance-branch keys: cls_token, blocks_token.*, norm.*, head.*)."""
    trunk = {k: v for k, v in state.items() if not INSTANCE_KEY.match(k)}
    instance = {k: v for k, v in state.items() if INSTANCE_KEY.match(k)}
    return trunk, instance


def _max_index(keys: Iterable[str], pattern: str) -> int:
    found = [int(m.group(1)) for k in keys for m in [re.match(pattern, k)] if m]
    return max(found) + 1 if found else 0


OFFICIAL_HEADS = {'vit_small': (384, 6), 'vit_base': (768, 12), 'vit_large': (1024, 16)}


def infer_encoder_config(encoder: Dict[str, torch.Tensor], arch_name: Optional[str] = None) -> dict:
    """Encoder hyper-parameters from tensor shapes.

    Shapes do not determine the number of heads: it comes from the official
    ``arch`` name when that matches the width, else from the standard 64-d head.
    """
    if 'patch_embed.proj.weight' not in encoder or 'pos_embed' not in encoder:
        raise KeyError('Cannot infer the architecture: patch_embed.proj.weight or pos_embed is missing.')
    embed_dim, in_chans, patch, _ = encoder['patch_embed.proj.weight'].shape
    num_patches = encoder['pos_embed'].shape[1]
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(f'pos_embed has {num_patches} tokens, not a square grid; pass img_size explicitly.')
    depth = _max_index(encoder, r'blocks\.(\d+)\.')
    known_dim, known_heads = OFFICIAL_HEADS.get(arch_name, (None, None))
    num_heads = known_heads if known_dim == embed_dim else max(1, embed_dim // 64)
    config = dict(arch=dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads),
                  img_size=grid * patch, patch_size=patch, in_chans=in_chans,
                  mlp_ratio=encoder['blocks.0.mlp.fc1.weight'].shape[0] / embed_dim,
                  num_class_attn_blocks=_max_index(encoder, r'blocks_token\.(\d+)\.'))
    if 'head.0.weight' in encoder:
        last = _max_index(encoder, r'head\.(\d+)\.') - 1
        config.update(proj_hidden_dim=encoder['head.0.weight'].shape[0],
                      proj_dim=encoder[f'head.{last}.weight'].shape[0])
    return config


def report_load(module: nn.Module, state: Dict[str, torch.Tensor], strict: bool = False,
                name: str = 'model', ignored: Iterable[str] = ()) -> Tuple[list, list]:
    """``load_state_dict`` that never fails silently.

    Shape mismatches always raise (naming both shapes). Missing and unexpected
    keys are printed; with ``strict`` they raise. ``ignored`` keys were dropped
    on purpose by the caller and are listed as such.
    """
    own = module.state_dict()
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise ValueError(f'Checkpoint does not match the {name} architecture (width, depth or patch size '
                         'differ):\n  ' + '\n  '.join(mismatched[:10]))
    result = module.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    ignored = sorted(ignored)
    print_log(f'Loaded {len(state) - len(unexpected)}/{len(own)} tensors into {name}; '
              f'missing keys: {_summary(missing)}; unexpected keys: {_summary(unexpected)}'
              + (f'; ignored on purpose: {_summary(ignored)}' if ignored else ''), logger='current')
    if strict and (missing or unexpected):
        raise KeyError(f'Strict load into {name} failed: missing {missing[:10]}, unexpected {unexpected[:10]}.')
    return missing, unexpected


def _summary(keys: list, limit: int = 8) -> str:
    if not keys:
        return 'none'
    shown = ', '.join(keys[:limit])
    return f'{len(keys)} [{shown}{", ..." if len(keys) > limit else ""}]'


def extrema_config(checkpoint: dict, state: Dict[str, torch.Tensor]) -> dict:
    """ExtreMA constructor kwargs: stored in our checkpoints, inferred from shapes otherwise.

    Inferred configs use one mask (r=0.8); pass ``ids_keep`` or override to mask differently.
    """
    config = dict(checkpoint.get('meta', {}).get('extrema_config') or {})
    if config:
        return config
    student = {k[len('student.'):]: v for k, v in state.items() if k.startswith('student.')}
    config = infer_encoder_config(student, checkpoint.get('arch'))
    if 'predictor.0.weight' in state:
        config['pred_hidden_dim'] = state['predictor.0.weight'].shape[0]
    config.update(mask_ratio=0.8, num_masks=1)
    return config


def load_pretrained(path: str, strict: bool = False, device: str = 'cpu', num_heads: Optional[int] = None,
                    **overrides):
    """An ``ExtreMA`` model in eval mode from our or an official checkpoint.

    Hyper-parameters come from ``meta['extrema_config']`` or are inferred from the
    tensor shapes (see ``infer_encoder_config`` for the head count, which
    ``num_heads`` overrides); ``overrides`` replace any ``ExtreMA`` argument.
    """
    from .models.extrema import ExtreMA
    from .models.vit import resolve_arch
    checkpoint = load_file(path)
    state = to_extrema_state_dict(checkpoint)
    config = dict(extrema_config(checkpoint, state), **overrides)
    if num_heads is not None:
        config['arch'] = dict(resolve_arch(config['arch']), num_heads=num_heads)
    config.setdefault('drop_path_rate', 0.)
    model = ExtreMA(**config)
    report_load(model, state, strict=strict, name='ExtreMA')
    return model.to(device).eval()


def atomic_save(obj, path: str) -> None:
    """``torch.save`` that never leaves a half-written file under ``path``."""
    from .engine.fileio import AtomicLocalBackend
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    AtomicLocalBackend().put(buffer.getvalue(), path)
