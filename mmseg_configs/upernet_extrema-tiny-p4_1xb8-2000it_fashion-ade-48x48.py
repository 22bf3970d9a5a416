# The tiny UperNet of the 500-iteration config trained 4x longer, validated every 500 iterations:
# the schedule of the small-scale reproduction's zoo-against-random-init comparison
# (docs/reproduction.md). About 12 minutes a run on one CPU thread.
_base_ = ['./upernet_extrema-tiny-p4_1xb8-500it_fashion-ade-48x48.py']
max_iters = 2000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=50, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=500)
# The reported mIoU is the last validation's, so no best-of-validations checkpoint.
default_hooks = dict(checkpoint=dict(interval=max_iters, save_best=None))
