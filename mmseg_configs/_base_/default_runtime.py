default_scope = 'mmseg'
# `extrema` registers ExtreMAViT, FashionADEDataset and the layer-decay constructor in mmseg.
custom_imports = dict(imports=['extrema', 'extrema.engine.seg_hooks'], allow_failed_imports=False)
env_cfg = dict(cudnn_benchmark=True, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
# TensorBoard instead of the JSON scalars: --cfg-options visualizer.vis_backends.0.type=TensorboardVisBackend
vis_backends = [dict(type='LocalVisBackend')]
# No fixed name: each run gets its own visualizer (and --show-dir), also within one process.
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
tta_model = dict(type='SegTTAModel')
# Fails fast when head num_classes and the dataset disagree, or a label file is out of range.
custom_hooks = [dict(type='SegDataCheckHook')]
