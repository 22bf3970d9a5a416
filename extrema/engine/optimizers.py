"""Optimizer wrappers and their constructors."""
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS

from ..registry import OPTIM_WRAPPER_CONSTRUCTORS
from ..registry import OPTIM_WRAPPERS as EXTREMA_OPTIM_WRAPPERS

NO_DECAY_NAMES = ('cls_token', 'pos_embed', 'mask_token')


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """1-D parameters (biases, norms, LayerScale) and token/position tables."""
    return param.ndim <= 1 or name.split('.')[-1] in NO_DECAY_NAMES


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DecayGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Two parameter groups, [no_decay, decay], as timm's ``add_weight_decay``.

    Frozen parameters (the EMA teacher) are left out of the optimizer.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if is_model_wrapper(model):
            model = model.module
        no_decay, decay = [], []
        for name, param in model.named_parameters():
            if param.requires_grad:
                (no_decay if no_weight_decay(name, param) else decay).append(param)
        optimizer_cfg = dict(self.optimizer_cfg)
        optimizer_cfg['params'] = [dict(params=no_decay, weight_decay=0.), dict(params=decay)]
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(self.optim_wrapper_cfg, default_args=dict(optimizer=optimizer))


@EXTREMA_OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward runs under bf16 ``torch.autocast`` on the model's
    device, with no loss scaling (bf16 has fp32's range). It is what ``--amp`` uses on a
    CPU with fast native bf16: mmengine's ``AmpOptimWrapper`` asserts a GPU.
    In configs of other scopes: ``type='extrema.AutocastOptimWrapper'``."""

    def __init__(self, optimizer, dtype: str = 'bfloat16', **kwargs):
        if dtype != 'bfloat16':
            raise ValueError(f"AutocastOptimWrapper supports dtype='bfloat16' only, got {dtype!r}: "
                             'float16 needs a loss scale (AmpOptimWrapper, on a GPU).')
        super().__init__(optimizer, **kwargs)
        self.dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: nn.Module):
        device = next(model.parameters()).device.type
        with super().optim_context(model), torch.autocast(device, dtype=self.dtype):
            yield
