"""One size knob for segmentation configs: ``--cfg-options crop_size=(H, W)``.

A config's ``crop_size`` variable is read when the file is parsed, so overriding it alone would
change nothing. ``apply_crop_size`` carries the new size to every setting that was derived from
the old one: the train crop, the resize scales of the train and test pipelines (scaled by the same
factor), the data preprocessor's padding size, the backbone's ``img_size`` (its position table)
and the slide-inference window and stride.
"""
from typing import Tuple

from mmengine.config import Config
from mmengine.logging import print_log

RESIZES = ('RandomResize', 'Resize')


def _pair(value) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise ValueError(f'crop_size must be an int or (height, width), got {value!r}; e.g. '
                     "--cfg-options 'crop_size=(64,64)'.")


def _walk(node, path: str = ''):
    """(path, dict) for every dict in the config tree."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _walk(value, f'{path}.{index}')


def apply_crop_size(cfg: Config, options: dict) -> dict:
    """Applies ``options['crop_size']`` to everything sized from the config's ``crop_size``;
    returns the other options (given explicitly, they are applied after and win)."""
    if 'crop_size' not in options or 'crop_size' not in cfg:
        return options
    options = dict(options)
    new = _pair(options.pop('crop_size'))
    old = _pair(cfg.crop_size)
    if new == old:
        return options
    factor = min(new) / min(old)  # the resize scales keep their ratio to the crop
    changed = []
    for path, node in _walk(cfg._cfg_dict):
        kind = node.get('type')
        if kind == 'RandomCrop' and _pair(node.get('crop_size')) == old:
            node['crop_size'] = new
            changed.append(f'{path}.crop_size')
        elif kind in RESIZES and isinstance(node.get('scale'), (list, tuple)):
            node['scale'] = tuple(round(s * factor) for s in node['scale'])
            changed.append(f'{path}.scale')
        elif path.endswith('data_preprocessor') or path.endswith('data_preprocessor.test_cfg'):
            if node.get('size') is not None and _pair(node['size']) == old:
                node['size'] = new
                changed.append(f'{path}.size')
        elif path.endswith('backbone') and 'img_size' in node and _pair(node['img_size']) == old:
            node['img_size'] = new
            changed.append(f'{path}.img_size')
        elif path.endswith('test_cfg') and node.get('mode') == 'slide' and _pair(node.get('crop_size')) == old:
            node['crop_size'] = new
            node['stride'] = tuple(round(s * factor) for s in _pair(node['stride']))
            changed.append(f'{path}.crop_size/stride')
    cfg.crop_size = new
    print_log(f'crop_size {old} -> {new}: set ' + ', '.join(changed), logger='current')
    return options
