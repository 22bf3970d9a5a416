"""Layer-wise learning-rate decay for ViTs with timm parameter names (``blocks.<i>.``).

mmseg's own constructors pick the layer rule by backbone class name and expect
BEiT naming (``layers.<i>.``); with timm naming they silently apply no decay
across blocks (see docs/segmentation.md). This constructor reads the layer id
from the parameter name, so it works for any model whose ViT sits under
``backbone.`` (segmentation, classification) or at the top level.
"""
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from ..models.layer_depth import block_indices, layer_id
from ..registry import OPTIM_WRAPPER_CONSTRUCTORS
from .optimizers import no_weight_decay


def no_weight_decay_for_finetune(name: str, param: nn.Parameter) -> bool:
    """Biases, norms, token/position tables and relative position bias tables."""
    return (no_weight_decay(name, param) or name.endswith('.bias')
            or name.endswith('relative_position_bias_table'))


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups with lr scale ``decay_rate ** (num_layers + 1 - layer_id)`` (``layer_id``:
    the embeddings 0, ``blocks.<i>`` i+1, the rest, class attention and its cls_token included,
    num_layers+1).

    ``paramwise_cfg=dict(num_layers=12, decay_rate=0.65)``. Each (layer, decay)
    pair is one group carrying ``lr_scale``, ``layer_id`` and ``param_names``.
    Frozen parameters are left out of the optimizer.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        missing = [k for k in ('num_layers', 'decay_rate') if k not in (paramwise_cfg or {})]
        if missing:
            raise ValueError(
                f'LayerDecayOptimWrapperConstructor needs paramwise_cfg with {missing}; got '
                f'paramwise_cfg={paramwise_cfg}. Set e.g. '
                "optim_wrapper.paramwise_cfg=dict(num_layers=12, decay_rate=0.65) "
                '(num_layers = the backbone depth).')
        unknown = set(paramwise_cfg) - {'num_layers', 'decay_rate'}
        if unknown:
            raise ValueError(f'LayerDecayOptimWrapperConstructor: unknown paramwise_cfg keys '
                             f'{sorted(unknown)}; only num_layers and decay_rate are supported.')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.num_layers = int(paramwise_cfg['num_layers'])
        self.decay_rate = float(paramwise_cfg['decay_rate'])
        if self.base_lr is None or self.base_wd is None:
            raise ValueError('LayerDecayOptimWrapperConstructor needs optimizer.lr and '
                             f'optimizer.weight_decay; got optimizer={self.optimizer_cfg}.')

    def add_params(self, params: list, module: nn.Module, **kwargs) -> None:
        self._check_depth(module)
        class_attention = any('blocks_token.' in name for name, _ in module.named_parameters())
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            depth = layer_id(name, self.num_layers, class_attention)
            decay = not no_weight_decay_for_finetune(name, param)
            key = (depth, decay)
            if key not in groups:
                scale = self.decay_rate ** (self.num_layers + 1 - depth)
                groups[key] = dict(params=[], param_names=[], layer_id=depth, lr_scale=scale,
                                   lr=self.base_lr * scale,
                                   weight_decay=self.base_wd if decay else 0.)
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        for key in sorted(groups):
            params.append(groups[key])
        summary = ', '.join(f'layer {d}{"" if dec else " no-wd"}: {len(g["params"])} params '
                            f'x{g["lr_scale"]:.4g}' for (d, dec), g in sorted(groups.items()))
        print_log(f'Layer decay {self.decay_rate} over {self.num_layers} layers: {summary}',
                  logger='current')

    def _check_depth(self, module: nn.Module) -> None:
        blocks = block_indices(name for name, _ in module.named_parameters())
        if blocks != set(range(self.num_layers)):
            found = (f'blocks {sorted(blocks)}' if blocks else 'no "blocks.<i>." parameters')
            raise ValueError(
                f'LayerDecayOptimWrapperConstructor: paramwise_cfg.num_layers={self.num_layers} '
                f'but the model has {found}. Set num_layers to the backbone depth.')
