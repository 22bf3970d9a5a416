"""The ``extrema`` scope: child registries of mmengine's roots.

Pretraining and semi-supervised configs use ``default_scope='extrema'``; names
not found here fall back to mmengine's (AdamW, CheckpointHook, ...).
Segmentation configs use mmseg's scope, and the segmentation backbone and the
layer-decay constructor are registered there as well.
"""
from mmengine import registry as root
from mmengine.registry import Registry


def _child(parent: Registry) -> Registry:
    return Registry(parent.name, parent=parent, scope='extrema')


MODELS = _child(root.MODELS)
MODEL_WRAPPERS = _child(root.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(root.WEIGHT_INITIALIZERS)
DATASETS = _child(root.DATASETS)
DATA_SAMPLERS = _child(root.DATA_SAMPLERS)
TRANSFORMS = _child(root.TRANSFORMS)
FUNCTIONS = _child(root.FUNCTIONS)
HOOKS = _child(root.HOOKS)
LOOPS = _child(root.LOOPS)
RUNNERS = _child(root.RUNNERS)
RUNNER_CONSTRUCTORS = _child(root.RUNNER_CONSTRUCTORS)
OPTIMIZERS = _child(root.OPTIMIZERS)
OPTIM_WRAPPERS = _child(root.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(root.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(root.PARAM_SCHEDULERS)
METRICS = _child(root.METRICS)
EVALUATOR = _child(root.EVALUATOR)
VISUALIZERS = _child(root.VISUALIZERS)
VISBACKENDS = _child(root.VISBACKENDS)
LOG_PROCESSORS = _child(root.LOG_PROCESSORS)
