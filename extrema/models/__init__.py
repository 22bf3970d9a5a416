from .classifier import ExtreMAClassifier  # noqa: F401
from .color_augment import BatchColorAugment
from .data_preprocessor import ClassifierDataPreprocessor, NormalizeDataPreprocessor, TwoViewDataPreprocessor
from .extrema import ExtreMA, byol_loss, infonce_loss
from .masking import check_mask_config, num_visible, sample_masks
from .vit import ExtreMAEncoder, ViTTrunk, count_parameters, sincos_pos_embed_2d
from . import timm_models  # noqa: F401,E402  (registers extrema_vit_* with timm)

__all__ = ['BatchColorAugment', 'ClassifierDataPreprocessor', 'ExtreMA', 'ExtreMAEncoder',
           'NormalizeDataPreprocessor', 'TwoViewDataPreprocessor', 'ViTTrunk', 'byol_loss',
           'check_mask_config', 'count_parameters', 'infonce_loss', 'num_visible', 'sample_masks',
           'sincos_pos_embed_2d']


def __getattr__(name):
    # ExtreMAViT lives in mmseg's registry: imported on first use, so ``import extrema.models``
    # needs no mmseg (``extrema.seg`` registers it).
    if name == 'ExtreMAViT':
        from .seg_backbone import ExtreMAViT
        return ExtreMAViT
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
