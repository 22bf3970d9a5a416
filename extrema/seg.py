"""The mmsegmentation side of the toolkit, in mmseg's registries: the ``ExtreMAViT`` backbone, the
segmentation checks (``SegDataCheckHook`` and the others of ``engine/seg_hooks.py``), the
``FashionADEDataset`` scenes and ``LayerDecayOptimWrapperConstructor``.

``import extrema.seg`` registers them (a segmentation config's ``custom_imports``). ``import
extrema`` imports this module only when mmseg is installed, so pretraining and the
semi-supervised tools run without mmseg.
"""
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMSEG_OPTIM_WRAPPER_CONSTRUCTORS

from .data.fashion_ade import FashionADEDataset
from .engine import seg_hooks  # noqa: F401  (registration)
from .engine.layer_decay import LayerDecayOptimWrapperConstructor
from .models.seg_backbone import ExtreMAViT

MMSEG_OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=LayerDecayOptimWrapperConstructor)

__all__ = ['ExtreMAViT', 'FashionADEDataset', 'LayerDecayOptimWrapperConstructor']
