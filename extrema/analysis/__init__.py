"""Analyses of learned ExtreMA representations, on any checkpoint (ours, official,
converted backbones, mmseg segmentors): attention maps, feature inversion and the
locality probe. Each returns its numbers and a ``PanelFigure``; the CLIs are in
``tools/analysis/``."""
from .attention import attention_maps, class_attention_map, plot_attention_maps, self_attention_maps
from .images import load_image
from .inversion import feature_inversion, invert_visible_features, plot_inversions
from .loading import LoadedEncoder, load_encoder, require_instance_branch
from .locality import locality_probe, plot_locality, sample_boxes

__all__ = ['LoadedEncoder', 'attention_maps', 'class_attention_map', 'feature_inversion',
           'invert_visible_features', 'load_encoder', 'load_image', 'locality_probe',
           'plot_attention_maps', 'plot_inversions', 'plot_locality', 'require_instance_branch',
           'sample_boxes', 'self_attention_maps']
