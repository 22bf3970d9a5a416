# One epoch (468 steps) of the 60k InfoNCE config: the run length of the small-scale ablations of
# the mask ratio and of the number of masks (docs/reproduction.md), e.g.
#   --cfg-options model.mask_ratio=0.5 model.num_masks=1
# Warm-up 100 steps, then cosine to 0; a checkpoint every third of the epoch.
_base_ = ['./extrema_vit-tiny-p4_mask08x5_1xb128-infonce-4e_fashion-mnist-60k-32px.py']
max_iters = 468
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters - 100, eta_min=0., by_epoch=False, begin=100, end=max_iters),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
default_hooks = dict(checkpoint=dict(interval=156, by_epoch=False, max_keep_ckpts=-1, save_last=True))
