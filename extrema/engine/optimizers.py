"""Optimizer wrapper constructors."""
import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor

from ..registry import OPTIM_WRAPPER_CONSTRUCTORS

NO_DECAY_NAMES = ('cls_token', 'pos_embed', 'mask_token')


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """1-D parameters (biases, norms, LayerScale) and token/position tables."""
    return param.ndim <= 1 or name.split('.')[-1] in NO_DECAY_NAMES


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DecayGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Two parameter groups, [no_decay, decay], as timm's ``add_weight_decay``.

    Frozen parameters (the EMA teacher) are left out of the optimizer.
    """

    def add_params(self, params: list, module: nn.Module, **kwargs) -> None:
        no_decay, decay = [], []
        for name, param in module.named_parameters():
            if param.requires_grad:
                (no_decay if no_weight_decay(name, param) else decay).append(param)
        params.append(dict(params=no_decay, weight_decay=0.))
        params.append(dict(params=decay))
