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

    Frozen parameters (the EMA teacher) are left out of the optimizer. Parameters whose
    name starts with a key of ``paramwise_cfg=dict(lr_mult={prefix: factor})`` (e.g.
    ``{'predictor.': 10.}``, the faster BYOL predictor) get two more groups at that lr.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if is_model_wrapper(model):
            model = model.module
        lr_mult = dict((self.paramwise_cfg or {}).get('lr_mult', {}))
        groups = {}  # (lr factor, decays) -> params; factor 1 first, so the default is [no_decay, decay]
        for name, param in model.named_parameters():
            if param.requires_grad:
                factor = next((f for prefix, f in lr_mult.items() if name.startswith(prefix)), 1.)
                groups.setdefault((factor, False), [])
                groups.setdefault((factor, True), [])
                groups[(factor, not no_weight_decay(name, param))].append(param)
        optimizer_cfg = dict(self.optimizer_cfg)
        optimizer_cfg['params'] = [
            dict(params=params, **(dict() if decays else dict(weight_decay=0.)),
                 **(dict(lr=optimizer_cfg['lr'] * factor) if factor != 1. else dict()))
            for (factor, decays), params in sorted(groups.items(), key=lambda item: item[0][0] != 1.)]
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
