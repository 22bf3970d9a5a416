"""The ``extrema`` scope: child registries of mmengine's roots.

Pretraining and semi-supervised configs use ``default_scope='extrema'``; names
not found here fall back to mmengine's (AdamW, CheckpointHook, ...).
Segmentation configs use mmseg's scope, and the segmentation backbone and the
layer-decay constructor are registered there as well.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='extrema')
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='extrema')
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS, scope='extrema')
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='extrema')
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='extrema')
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope='extrema')
