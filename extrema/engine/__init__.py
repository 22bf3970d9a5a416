from .fileio import AtomicLocalBackend
from .hooks import (CheckpointGuardHook, ExtreMACheckpointHook, MomentumUpdateHook, TrainDataHook,
                    cosine_momentum)
from .layer_decay import LayerDecayOptimWrapperConstructor, layer_id  # noqa: F401
from .optimizers import AutocastOptimWrapper, DecayGroupsOptimWrapperConstructor, no_weight_decay
from . import classifier_hooks, knn_hook  # noqa: F401  (registration)

__all__ = ['AtomicLocalBackend', 'AutocastOptimWrapper', 'CheckpointGuardHook',
           'DecayGroupsOptimWrapperConstructor', 'ExtreMACheckpointHook', 'MomentumUpdateHook', 'TrainDataHook',
           'cosine_momentum', 'no_weight_decay']
