from .fileio import AtomicLocalBackend
from .hooks import ExtreMACheckpointHook, MomentumUpdateHook, cosine_momentum
from .layer_decay import LayerDecayOptimWrapperConstructor, layer_id  # noqa: F401
from .optimizers import DecayGroupsOptimWrapperConstructor, no_weight_decay
from . import seg_hooks  # noqa: F401  (registration)

__all__ = ['AtomicLocalBackend', 'DecayGroupsOptimWrapperConstructor', 'ExtreMACheckpointHook',
           'MomentumUpdateHook', 'cosine_momentum', 'no_weight_decay']
