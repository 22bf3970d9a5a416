# The BYOL model zoo recipe: the paper's loss (predictor lr x10) with one 80% mask, an eighth of
# the InfoNCE recipe's lr and 16 epochs (7,488 steps), the setting in which BYOL's frozen features
# pass raw pixels on 1% k-NN at this scale (docs/reproduction.md, the BYOL finding).
_base_ = ['./extrema_vit-tiny-p4_mask08x5_1xb128-byol-pred10x-4e_fashion-mnist-60k-32px.py']
warmup_epochs = 1
max_epochs = 16
model = dict(num_masks=1)
optim_wrapper = dict(optimizer=dict(lr=6.25e-5))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=0., by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(interval=936))  # every 2 epochs, for the learning curve
