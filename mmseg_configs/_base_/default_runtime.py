# mmseg's runtime, plus the toolkit's registrations and checks.
_base_ = ['mmseg::_base_/default_runtime.py']
# `extrema.seg` registers ExtreMAViT, FashionADEDataset, the seg checks and the layer-decay
# constructor in mmseg's registries (importing it imports `extrema`).
custom_imports = dict(imports=['extrema.seg'], allow_failed_imports=False)
# TensorBoard instead of the JSON scalars: --cfg-options visualizer.vis_backends.0.type=TensorboardVisBackend
vis_backends = [dict(type='LocalVisBackend')]
# No fixed name (mmseg's is 'visualizer'): each run gets its own visualizer (and --show-dir), also
# within one process.
visualizer = dict(_delete_=True, type='SegLocalVisualizer', vis_backends=vis_backends)
# Fails fast when head num_classes and the dataset disagree, or a label file is out of range.
custom_hooks = [dict(type='SegDataCheckHook')]
