"""The one checkpoint layer: every checkpoint the toolkit reads goes through ``load_file``,
and every model it builds from one through ``EncoderWeights`` or ``load_pretrained``.

Reading is safe by construction. ``load_file`` calls ``torch.load(weights_only=True)``
(explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it off) and widens
torch's allow-list only inside that call, by the globals of mmengine's message hub
(``HistoryBuffer``, numpy arrays and scalars). The one ``getattr`` such a pickle needs
(``getattr(HistoryBuffer, 'min')`` and the like) is served by a function that returns
HistoryBuffer's statistics methods and nothing else. Configs stored in checkpoints are
parsed with ``ast``, never executed. ``import extrema`` routes mmengine's own loader
(``--resume``, ``load_from``, ``tools/test.py``, any ``init_cfg``) through ``load_file``
(``extrema.compat.route_mmengine_checkpoints``).

Formats (``detect_format``):

* ``official``: the released ExtreMA files, keys ``module.base_encoder.*`` (student),
  ``module.momentum_encoder.*`` (teacher), ``module.predictor.*``, and ``arch``;
* ``extrema``: our pretraining checkpoints (mmengine), keys ``student.*``, ``teacher.*``,
  ``predictor.*``;
* ``backbone``: one encoder from ``tools/convert_checkpoint.py``, bare keys
  (``patch_embed.*``, ``pos_embed``, ``blocks.*``, ``cls_token``, ``blocks_token.*``, ``norm.*``);
* ``mmseg``: a segmentor (or our classifier) whose ``backbone.*`` is an ExtreMA trunk;
* ``mmpretrain``: an mmpretrain / mmseg ViT (``MAE``, ``MoCoV3``, ``ImageClassifier``):
  ``backbone.layers.N.ln1``, ``attn.qkv``, ``ffn.layers.0.0``, ``patch_embed.projection``,
  ``pos_embed`` with a [cls] slot; MoCo v3's ``momentum_encoder.module.0.*`` is the teacher.

The architecture lives in ``meta['extrema_config']`` (written by pretraining and by the
converter); without it, it is inferred from tensor shapes (``encoder_config``). The pixel
normalisation of the pretraining is ``meta['data_preprocessor']`` (converter) or the
``data_preprocessor`` of the stored config text (``pixel_normalization``).
"""
import ast
import io
import math
import os
import re
import zipfile
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper

from .registry import HOOKS

CONFIG_KEY = 'extrema_config'
BRANCH_PREFIX = {'official': {'student': 'module.base_encoder.', 'teacher': 'module.momentum_encoder.'},
                 'extrema': {'student': 'student.', 'teacher': 'teacher.'},
                 'mmpretrain': {'student': 'backbone.', 'teacher': 'momentum_encoder.module.0.'}}
ONE_ENCODER_PREFIX = {'backbone': '', 'mmseg': 'backbone.'}
OFFICIAL_TO_OURS = (('module.base_encoder.', 'student.'), ('module.momentum_encoder.', 'teacher.'),
                    ('module.predictor.', 'predictor.'))
MMPRETRAIN_TO_OURS = ((r'patch_embed\.projection\.', 'patch_embed.proj.'),
                      (r'layers\.(\d+)\.ln1\.', r'blocks.\1.norm1.'),
                      (r'layers\.(\d+)\.ln2\.', r'blocks.\1.norm2.'),
                      (r'layers\.(\d+)\.attn\.(qkv|proj)\.', r'blocks.\1.attn.\2.'),
                      (r'layers\.(\d+)\.ffn\.layers\.0\.0\.', r'blocks.\1.mlp.fc1.'),
                      (r'layers\.(\d+)\.ffn\.layers\.1\.', r'blocks.\1.mlp.fc2.'),
                      (r'ln1\.', 'norm.'))
MMPRETRAIN_KEY = re.compile(r'^(backbone\.)?layers\.\d+\.ln1\.')
# Keys of the instance branch: present in encoder files, unused by dense backbones.
INSTANCE_KEY = re.compile(r'^(cls_token|blocks_token\.|norm\.|projector\.)')
ENCODER_ARGS = ('arch', 'img_size', 'patch_size', 'in_chans', 'mlp_ratio', 'qkv_bias',
                'num_class_attn_blocks', 'layer_scale_init', 'proj_hidden_dim', 'proj_dim')
OFFICIAL_HEADS = {'vit_small': (384, 6), 'vit_base': (768, 12), 'vit_large': (1024, 16)}
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


# ---------------------------------------------------------------- reading and writing files

def _history_buffer_statistic(owner, name: str):
    """The ``getattr`` of a weights-only load: mmengine pickles a HistoryBuffer's statistics
    methods as ``getattr(HistoryBuffer, 'min')``; every other use is refused, which keeps
    ``getattr(getattr, '__self__')`` (the builtins module, hence ``eval``) out of reach."""
    from mmengine.logging import HistoryBuffer
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise RuntimeError(f'the file asks for getattr({type(owner).__name__}, {name!r}), which a '
                       'checkpoint never needs')


def _mmengine_globals() -> list:
    """What mmengine writes besides tensors: its message hub (HistoryBuffer, numpy values)."""
    import numpy as np
    import numpy.dtypes
    from mmengine.logging import HistoryBuffer
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    allowed = [HistoryBuffer, np.ndarray, np.dtype, _reconstruct, scalar,
               (_history_buffer_statistic, 'builtins.getattr')]
    return allowed + [getattr(numpy.dtypes, n) for n in dir(numpy.dtypes) if n.endswith('DType')]


def load_file(path: str, map_location='cpu', mmap: bool = False) -> dict:
    """A checkpoint as a dict, read with ``torch.load(weights_only=True)``: tensors, builtin
    containers and mmengine's message hub only. Nothing in the file is executed. ``mmap``
    leaves the tensors on disk until touched (for reading keys and ``meta`` only); files of
    the legacy, non-zip format are read whole."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint {path!r} does not exist.')
    try:
        with torch.serialization.safe_globals(_mmengine_globals()):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True,
                                    mmap=mmap and zipfile.is_zipfile(path))
    except Exception as error:  # truncated zip, pickle with code in it, not a torch file
        raise RuntimeError(_unreadable(path, str(error))) from None
    if not isinstance(checkpoint, dict):
        raise TypeError(f'Checkpoint {path!r} holds a {type(checkpoint).__name__}, expected a dict.')
    return checkpoint


def _unreadable(path: str, error: str) -> str:
    # torch's own message advises weights_only=False, i.e. running the file's code: never repeated.
    if 'Weights only load failed' in error:
        found = re.search(r'GLOBAL (\S+)', error)
        reason = ('it holds Python objects besides tensors and plain data'
                  + (f' ({found.group(1)})' if found else ''))
    else:
        reason = error.split('\n')[0]
    return (f'Cannot read checkpoint {path!r}: {reason}. It is truncated (an interrupted copy), not a '
            'PyTorch checkpoint, or holds objects this toolkit never loads, because unpickling them could '
            'run code from the file. Re-download or re-export the file.')


def atomic_save(obj, path: str) -> None:
    """``torch.save`` that never leaves a half-written file under ``path``."""
    from .engine.fileio import AtomicLocalBackend
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    AtomicLocalBackend().put(buffer.getvalue(), path)


# ---------------------------------------------------------------- formats

def state_dict_of(checkpoint: dict) -> Dict[str, torch.Tensor]:
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def detect_format(checkpoint: dict) -> str:
    keys = list(state_dict_of(checkpoint))
    if any(k.startswith(('module.base_encoder.', 'module.momentum_encoder.')) for k in keys):
        return 'official'
    if any(k.startswith(('student.', 'teacher.')) for k in keys):
        return 'extrema'
    if any(MMPRETRAIN_KEY.match(k) for k in keys):
        return 'mmpretrain'
    if 'backbone.pos_embed' in keys and any(k.startswith('backbone.blocks.') for k in keys):
        return 'mmseg'
    if 'pos_embed' in keys and any(k.startswith('blocks.') for k in keys):
        return 'backbone'
    raise ValueError('Unrecognised checkpoint: expected an ExtreMA (module.base_encoder.*, student.*, '
                     'blocks.*), mmseg (backbone.blocks.*) or mmpretrain ViT (backbone.layers.*) state '
                     f'dict; first keys are {keys[:5]}.')


def describe_format(checkpoint: dict) -> str:
    """``detect_format`` for messages: 'unrecognised' instead of an error."""
    try:
        return detect_format(checkpoint)
    except ValueError:
        return 'unrecognised'


def _from_mmpretrain(encoder: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An mmpretrain ViT's keys -> the ExtreMA trunk's; its [cls] slot leaves ``pos_embed``."""
    unsupported = sorted(k for k in encoder if 'gamma' in k or k.startswith('pre_norm.'))
    if unsupported:
        raise ValueError(f'This mmpretrain ViT has layer scale or a pre-norm ({unsupported[:3]}), which the '
                         'ExtreMA trunk does not have; only plain ViTs (MAE, MoCo v3, DeiT-style) load.')
    converted = {}
    for key, value in encoder.items():
        for pattern, replacement in MMPRETRAIN_TO_OURS:
            new, count = re.subn(f'^{pattern}', replacement, key)
            if count:
                key = new
                break
        converted[key] = value
    table = converted.get('pos_embed')
    if table is not None and math.isqrt(table.shape[1]) ** 2 != table.shape[1] \
            and math.isqrt(table.shape[1] - 1) ** 2 == table.shape[1] - 1:
        converted['pos_embed'] = table[:, 1:]
    return converted


def to_extrema_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """A full ExtreMA state dict (student/teacher/predictor) from an official or our checkpoint, or
    from a backbone file (its encoder as both branches)."""
    fmt = detect_format(checkpoint)
    state = state_dict_of(checkpoint)
    if fmt == 'extrema':
        return _rename_branch_projectors(dict(state))
    if fmt == 'backbone':
        print_log('A backbone file holds one encoder: it becomes both the student and the teacher; the '
                  'predictor (and a dropped projector) stay randomly initialised and are listed as missing.',
                  logger='current', level=30)
        return _rename_branch_projectors({f'{branch}.{k}': v for branch in ('student', 'teacher')
                                          for k, v in state.items()})
    if fmt != 'official':
        raise ValueError(f'This is a {fmt} file (a ViT trunk without class-attention blocks); a full ExtreMA '
                         'model needs an ExtreMA checkpoint (official, ours or a backbone file).')
    converted = {}
    for key, value in state.items():
        for old, new in OFFICIAL_TO_OURS:
            if key.startswith(old):
                converted[new + key[len(old):]] = value
                break
        else:
            converted[key] = value  # reported as unexpected when loaded
    return _rename_branch_projectors(converted)


def _rename_branch_projectors(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    from .models.vit import rename_legacy_projector
    for branch in ('student.', 'teacher.'):
        rename_legacy_projector(state, branch)
    return state


def encoder_state_dict(checkpoint: dict, branch: str = 'student') -> Dict[str, torch.Tensor]:
    """One encoder's weights in the ExtreMA encoder's names, from any format, as float32
    (fp16 backbone files included; the projector ``projector.*`` included when present, whatever
    the file calls it: ``head.*`` in official files and our older ones)."""
    if branch not in ('student', 'teacher'):
        raise ValueError(f"branch must be 'student' or 'teacher', got {branch!r}")
    fmt = detect_format(checkpoint)
    state = state_dict_of(checkpoint)
    if fmt in ONE_ENCODER_PREFIX:
        stored = (checkpoint.get('meta') or {}).get('branch')
        if stored is not None and stored != branch:
            print_log(f'Backbone file holds the {stored} encoder; using it although branch={branch!r}.',
                      logger='current', level=30)
        prefix = ONE_ENCODER_PREFIX[fmt]
    else:
        prefix = BRANCH_PREFIX[fmt][branch]
        if fmt == 'mmpretrain':
            if not any(k.startswith('backbone.') for k in state):
                prefix = ''  # a bare mmpretrain backbone
            elif branch == 'teacher' and not any(k.startswith(prefix) for k in state):
                print_log('This mmpretrain checkpoint has one encoder (no MoCo v3 momentum encoder); '
                          "using backbone.* although branch='teacher'.", logger='current', level=30)
                prefix = BRANCH_PREFIX[fmt]['student']
    encoder = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not encoder:
        raise KeyError(f'The checkpoint has no {branch} encoder (no keys starting with {prefix!r}).')
    if fmt == 'mmpretrain':
        encoder = _from_mmpretrain(encoder)
    elif fmt != 'mmseg':  # an ExtreMA encoder, whose projector the official code calls head
        from .models.vit import rename_legacy_projector
        rename_legacy_projector(encoder)
    return {k: v.float() if v.is_floating_point() else v for k, v in encoder.items()}


def split_instance_keys(state: Dict[str, torch.Tensor]) -> Tuple[dict, dict]:
    """(trunk keys, instance-branch keys: cls_token, blocks_token.*, norm.*, projector.*)."""
    trunk = {k: v for k, v in state.items() if not INSTANCE_KEY.match(k)}
    instance = {k: v for k, v in state.items() if INSTANCE_KEY.match(k)}
    return trunk, instance


# ---------------------------------------------------------------- stored configs, read as data

def config_fields(config_text, name: str) -> dict:
    """The literal fields of the first ``name=dict(...)`` (keyword or assignment) in a config
    text. The text is parsed, never executed: loading a checkpoint must not run its code."""
    if not isinstance(config_text, str):
        return {}
    try:
        tree = ast.parse(config_text)
    except SyntaxError:
        return {}
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == name:
            value = node.value
        elif isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == name for t in node.targets):
            value = node.value
        else:
            continue
        fields = {}
        for keyword in getattr(value, 'keywords', []):
            try:
                fields[keyword.arg] = ast.literal_eval(keyword.value)
            except ValueError:  # dict(...) calls and names are not literals
                if isinstance(keyword.value, ast.Call):
                    fields[keyword.arg] = {k.arg: ast.literal_eval(k.value) for k in keyword.value.keywords
                                           if isinstance(k.value, ast.Constant)}
        return fields
    return {}


def stored_pixel_normalization(checkpoint: dict) -> Optional[Tuple[tuple, tuple]]:
    """(mean, std) in 0-255 units that the file records for its pretraining:
    ``meta['data_preprocessor']``, else the ``data_preprocessor`` of the config text mmengine
    stores in ``meta['cfg']``; None when it records none."""
    meta = checkpoint.get('meta') or {}
    for fields in (meta.get('data_preprocessor') or {}, config_fields(meta.get('cfg'), 'data_preprocessor')):
        try:
            mean, std = (tuple(float(v) for v in fields[name]) for name in ('mean', 'std'))
            return mean, std
        except (KeyError, TypeError, ValueError):
            continue
    return None


def pixel_normalization(checkpoint: dict) -> Tuple[tuple, tuple]:
    """(mean, std) in 0-255 units of the pretraining: the stored ones, else ImageNet's (what the
    official release and the timm/mmpretrain defaults use; said loudly otherwise)."""
    from .models.data_preprocessor import IMAGENET_MEAN, IMAGENET_STD
    stored = stored_pixel_normalization(checkpoint)
    if stored is not None:
        return stored
    if describe_format(checkpoint) != 'official':
        print_log('The checkpoint stores no pixel normalisation; using ImageNet mean/std. If the encoder '
                  'was pretrained with other statistics, pass them (--mean/--std), or re-export the file '
                  'with tools/convert_checkpoint.py from the pretraining checkpoint, which records them.',
                  logger='current', level=30)
    return IMAGENET_MEAN, IMAGENET_STD


# ---------------------------------------------------------------- architecture

def _max_index(keys: Iterable[str], pattern: str) -> int:
    found = [int(m.group(1)) for k in keys for m in [re.match(pattern, k)] if m]
    return max(found) + 1 if found else 0


def infer_encoder_config(encoder: Dict[str, torch.Tensor], arch_name: Optional[str] = None) -> dict:
    """Encoder hyper-parameters from tensor shapes.

    Shapes do not determine the number of heads: it comes from the official
    ``arch`` name when that matches the width, else from the standard 64-d head
    (``encoder_config`` prefers the stored config and other evidence).
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
                  qkv_bias='blocks.0.attn.qkv.bias' in encoder,
                  num_class_attn_blocks=_max_index(encoder, r'blocks_token\.(\d+)\.'))
    if 'projector.0.weight' in encoder:
        last = _max_index(encoder, r'projector\.(\d+)\.') - 1
        config.update(proj_hidden_dim=encoder['projector.0.weight'].shape[0],
                      proj_dim=encoder[f'projector.{last}.weight'].shape[0])
    return config


def _mmpretrain_heads(checkpoint: dict) -> Optional[int]:
    """The head count of an mmpretrain ViT, from ``arch`` in its stored config."""
    arch = config_fields((checkpoint.get('meta') or {}).get('cfg'), 'backbone').get('arch')
    if isinstance(arch, dict):
        return arch.get('num_heads')
    if isinstance(arch, str):
        from mmpretrain.models.backbones.vision_transformer import VisionTransformer
        return VisionTransformer.arch_zoo.get(arch, {}).get('num_heads')
    return None


def stored_config(checkpoint: dict) -> dict:
    """The architecture a file records in ``meta['extrema_config']``: ExtreMA's kwargs in our
    pretraining checkpoints, the encoder's in backbone files; {} when there is none."""
    meta = checkpoint.get('meta') or {}
    # Backbone files converted before the one metadata key stored it as 'encoder_config'.
    return dict(meta.get(CONFIG_KEY) or meta.get('encoder_config') or {})


def _stated_heads(checkpoint: dict, encoder: Dict[str, torch.Tensor], num_heads: Optional[int]) -> Optional[int]:
    """The head count from ``num_heads``, else the stored ``meta['extrema_config']``, the
    relative position tables (one column per head), an mmpretrain config or the official
    ``arch`` name; None when nothing says it."""
    stored = stored_config(checkpoint)
    table = encoder.get('blocks.0.attn.relative_position_bias_table')
    official = OFFICIAL_HEADS.get(checkpoint.get('arch'))
    candidates = (lambda: num_heads,
                  lambda: stored.get('arch') and _resolve_heads(stored['arch']),
                  lambda: table is not None and table.shape[1],
                  lambda: detect_format(checkpoint) == 'mmpretrain' and _mmpretrain_heads(checkpoint),
                  lambda: official and official[0] == encoder['patch_embed.proj.weight'].shape[0] and official[1])
    return next((int(n) for n in (c() for c in candidates) if n), None)


def encoder_config(checkpoint: dict, encoder: Dict[str, torch.Tensor], num_heads: Optional[int] = None,
                   warn: bool = True) -> dict:
    """``ExtreMAEncoder`` kwargs of ``encoder`` (from ``encoder_state_dict``), in one place:
    the stored ``meta['extrema_config']``, completed from tensor shapes. The head count,
    which shapes do not give, comes from ``_stated_heads``, else is assumed to be width / 64
    (loudly, with ``warn``)."""
    stored = stored_config(checkpoint)
    config = infer_encoder_config(encoder)
    config.update({k: stored[k] for k in ENCODER_ARGS if k in stored and k != 'arch'})
    heads = _stated_heads(checkpoint, encoder, num_heads)
    if heads is None and warn:
        _warn_assumed_heads(config)
    config['arch'] = dict(config['arch'], num_heads=heads or config['arch']['num_heads'])
    return config


def _warn_assumed_heads(config: dict) -> None:
    print_log(f'The checkpoint does not say how many attention heads its ViT has; assuming 64-d heads '
              f'({config["arch"]["num_heads"]} for width {config["arch"]["embed_dim"]}). Pass num_heads '
              '(--num-heads) if not.', logger='current', level=30)


def _resolve_heads(arch) -> int:
    from .models.vit import resolve_arch
    return resolve_arch(arch)['num_heads']


@dataclass
class EncoderWeights:
    """One encoder of a checkpoint of any format, in the ExtreMA encoder's names, with the
    architecture and pixel normalisation to rebuild and feed it. The frozen tools, the
    analyses, the classifier and the mmseg backbone load through ``load_into``; the converter
    writes ``state`` and verifies it against ``build``."""
    path: str
    format: str
    branch: str
    state: Dict[str, torch.Tensor]
    config: dict  # ExtreMAEncoder kwargs
    mean: tuple   # 0-255 units
    std: tuple
    heads_stated: bool  # False: the head count in ``config`` is the width / 64 guess

    @classmethod
    def read(cls, path: str, branch: str = 'student', num_heads: Optional[int] = None) -> 'EncoderWeights':
        checkpoint = load_file(path)
        state = encoder_state_dict(checkpoint, branch)
        mean, std = pixel_normalization(checkpoint)
        return cls(path, detect_format(checkpoint), branch, state,
                   encoder_config(checkpoint, state, num_heads, warn=False), mean, std,
                   _stated_heads(checkpoint, state, num_heads) is not None)

    @property
    def has_class_attention(self) -> bool:
        return self.config['num_class_attn_blocks'] > 0

    def build(self, projector: bool = False, **overrides) -> nn.Module:
        """The encoder, freshly initialised (load with ``load_into``): an ``ExtreMAEncoder`` when
        the file has class-attention blocks (with its ``projector`` under ``projector=True``),
        else a ``ViTTrunk``."""
        from .models.vit import ExtreMAEncoder, ViTTrunk
        if not self.heads_stated:
            _warn_assumed_heads(self.config)
        config = dict(self.config, drop_path_rate=0., **overrides)
        trunk_args = ('arch', 'img_size', 'patch_size', 'in_chans', 'mlp_ratio', 'qkv_bias', 'drop_path_rate')
        if self.has_class_attention:
            encoder_args = trunk_args + ('num_class_attn_blocks', 'layer_scale_init')
            if projector:
                encoder_args += ('proj_hidden_dim', 'proj_dim')
            layers = sum(1 for k, v in self.state.items() if re.match(r'projector\.\d+\.weight$', k) and v.ndim == 2)
            return ExtreMAEncoder(proj_layers=layers if projector else 0,
                                  **{k: config[k] for k in encoder_args if k in config})
        rel_pos = 'blocks.0.attn.relative_position_bias_table' in self.state
        return ViTTrunk(use_rel_pos_bias=rel_pos, **{k: config[k] for k in trunk_args})

    def check_trunk(self, trunk: nn.Module, target: str, fix: str) -> None:
        """Raise, naming every difference and ``fix``, when ``trunk`` is not this ViT."""
        found = dict(embed_dim=self.config['arch']['embed_dim'], depth=self.config['arch']['depth'],
                     patch_size=self.config['patch_size'], in_chans=self.config['in_chans'],
                     mlp_ratio=self.config['mlp_ratio'])
        built = dict(embed_dim=trunk.embed_dim, depth=trunk.depth, patch_size=trunk.patch_size,
                     in_chans=trunk.patch_embed.proj.in_channels,
                     mlp_ratio=trunk.blocks[0].mlp.fc1.out_features / trunk.embed_dim)
        if found != built:
            diffs = ', '.join(f'{k} {found[k]} (checkpoint) vs {built[k]} (config)'
                              for k in found if found[k] != built[k])
            raise ValueError(
                f'{self.path} ({self.format} file) does not match the {target}: {diffs}; the checkpoint holds '
                f'{found}, the model is built with {built} (patch_embed.proj.weight is '
                f'{tuple(self.state["patch_embed.proj.weight"].shape)} in the checkpoint and '
                f'{tuple(trunk.patch_embed.proj.weight.shape)} in the model). {fix}')

    def load_into(self, module: nn.Module, class_attention: bool, strict: bool = False,
                  name: Optional[str] = None) -> Tuple[list, list]:
        """Load the trunk (and with ``class_attention`` the class-attention blocks, final LN and
        [cls] token) into ``module``, the positional table resized to its grid. Everything else
        (the ``projector.*`` always) is listed as ignored. Returns (missing, unexpected);
        raises when nothing matches."""
        from .models.vit import resize_pos_embed
        trunk, instance = split_instance_keys(self.state)
        wanted = {k: v for k, v in instance.items() if class_attention and not k.startswith('projector.')}
        state = dict(trunk, **wanted)
        if 'pos_embed' in state and hasattr(module, 'grid_size'):
            side = math.isqrt(state['pos_embed'].shape[1])
            state['pos_embed'] = resize_pos_embed(state['pos_embed'], (side, side), module.grid_size)
        name = name or f'{type(module).__name__} ({self.branch} encoder of {os.path.basename(self.path)})'
        missing, unexpected = report_load(module, state, strict=strict, name=name,
                                          ignored=[k for k in instance if k not in wanted])
        if len(state) == len(unexpected):
            raise KeyError(f'Nothing from {self.path!r} ({self.format} file) matches {name}; its keys start '
                           f'with {sorted(state)[:5]}.')
        return missing, unexpected


# ---------------------------------------------------------------- loading into models

def report_load(module: nn.Module, state: Dict[str, torch.Tensor], strict: bool = False,
                name: str = 'model', ignored: Iterable[str] = ()) -> Tuple[list, list]:
    """``load_state_dict`` that never fails silently.

    Shape mismatches always raise (naming both shapes). Missing and unexpected
    keys are printed (as a warning when there are any); with ``strict`` they raise.
    ``ignored`` keys were dropped on purpose by the caller and are listed as such.
    Tensors are cast to the module's dtype (fp16 files load into fp32 models).
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
              + (f'; ignored on purpose: {_summary(ignored)}' if ignored else ''), logger='current',
              level=30 if missing or unexpected else 20)
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
    stored = stored_config(checkpoint)
    if stored and detect_format(checkpoint) == 'extrema':
        return stored
    student = {k[len('student.'):]: v for k, v in state.items() if k.startswith('student.')}
    config = encoder_config(checkpoint, student)
    config.pop('qkv_bias')  # ExtreMA always has qkv biases
    if 'predictor.0.weight' in state:
        config['pred_hidden_dim'] = state['predictor.0.weight'].shape[0]
    config.update(mask_ratio=0.8, num_masks=1)
    return config


def load_pretrained(path: str, strict: bool = False, device: str = 'cpu', num_heads: Optional[int] = None,
                    **overrides):
    """An ``ExtreMA`` model in eval mode from our or an official checkpoint, or a backbone file
    (``to_extrema_state_dict``; fp16 files are cast to float32).

    Hyper-parameters come from ``meta['extrema_config']`` or are inferred from the
    tensor shapes (see ``encoder_config`` for the head count, which ``num_heads``
    overrides); ``overrides`` replace any ``ExtreMA`` argument. The data preprocessor
    normalises with the pretraining's mean/std.
    """
    from .models.extrema import ExtreMA
    from .models.vit import resolve_arch
    checkpoint = load_file(path)
    state = to_extrema_state_dict(checkpoint)
    config = dict(extrema_config(checkpoint, state), **overrides)
    if num_heads is not None:
        config['arch'] = dict(resolve_arch(config['arch']), num_heads=num_heads)
    config.setdefault('drop_path_rate', 0.)
    mean, std = pixel_normalization(checkpoint)
    config.setdefault('data_preprocessor', dict(type='TwoViewDataPreprocessor', mean=mean, std=std))
    model = ExtreMA(**config)
    report_load(model, {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
                strict=strict, name='ExtreMA')
    return model.to(device).eval()


# ---------------------------------------------------------------- whole models (tools/test.py)

FORMAT_NAMES = {'official': 'an official ExtreMA pretraining checkpoint',
                'extrema': 'an ExtreMA pretraining checkpoint',
                'backbone': 'a backbone file (one encoder)',
                'mmseg': 'a segmentor or classifier checkpoint of another model',
                'mmpretrain': 'an mmpretrain ViT checkpoint',
                'unrecognised': 'an unrecognised state dict'}


def require_every_tensor(model: nn.Module, checkpoint: dict, path: str, target: str, fix: str) -> None:
    """Raise, naming the file's format, unless ``checkpoint`` holds every tensor of ``model``
    (after mmengine's ``module.`` strip): evaluating a model whose weights did not load
    gives a number that means nothing."""
    state = {re.sub(r'^module\.', '', k): v for k, v in state_dict_of(checkpoint).items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    mismatched = [f'{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}' for k, v in own.items()
                  if k in state and hasattr(state[k], 'shape') and state[k].shape != v.shape]
    if missing or mismatched:
        fmt = describe_format(checkpoint)
        problem = (f'misses {len(missing)} of the {len(own)} tensors of the {target} (e.g. {missing[:3]})'
                   if missing else f'has other shapes (checkpoint vs model: {mismatched[:3]})')
        raise ValueError(f'{path} is {FORMAT_NAMES[fmt]} (format {fmt!r}), not a checkpoint of this {target}: '
                         f'it {problem}. {fix}')


@HOOKS.register_module()
class CompleteCheckpointHook(Hook):
    """Stops a run whose ``load_from`` checkpoint lacks any tensor of the model, before
    mmengine loads it leniently (there, missing keys are only logged)."""

    priority = 'VERY_HIGH'

    def __init__(self, checkpoint: str, target: str = 'segmentor',
                 fix: str = 'Pass the iter_N.pth written by tools/train.py for this config.'):
        self.checkpoint, self.target, self.fix = checkpoint, target, fix

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if isinstance(model, BaseTTAModel):
            model = model.module
        require_every_tensor(model, checkpoint, self.checkpoint, self.target, self.fix)
