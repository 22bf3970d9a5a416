# The tiny UperNet of the 500-iteration config with the ExtreMAViT trunk frozen: only the neck and
# the heads train, so the mIoU measures the patch tokens the trunk starts from (pretrained or random),
# a probe of the distributed representation rather than a fine-tuning recipe (docs/reproduction.md).
_base_ = ['./upernet_extrema-tiny-p4_1xb8-500it_fashion-ade-48x48.py']
# No stochastic depth in a trunk that does not train.
model = dict(backbone=dict(drop_path_rate=0.))
# A layer decay of 0 gives every trunk layer lr * 0**k = 0 (k >= 1) and the neck and heads (k = 0)
# the full lr; AdamW's decoupled weight decay is scaled by the lr, so the trunk stays as loaded.
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.))
