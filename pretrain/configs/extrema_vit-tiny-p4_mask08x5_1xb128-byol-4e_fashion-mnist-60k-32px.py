# The tiny ExtreMA on all 60,000 Fashion-MNIST training images (no labels), BYOL loss (the paper's)
# and the paper's momentum 0.996: the small-scale reproduction's BYOL row.
# Data: python tools/prepare_fashion_mnist.py --out data/fashion_mnist
# Measurements: docs/reproduction.md.
_base_ = ['./extrema_vit-tiny-p4_mask08x5_1xb128-cpu-8e_fashion-mnist-32px.py']
model = dict(loss_type='byol', base_momentum=0.996)
warmup_epochs = 1
max_epochs = 4
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=0., by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=5e-4))
# A checkpoint every 150 steps (a third of an epoch) for the learning curve.
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=150, by_epoch=False, max_keep_ckpts=-1, save_last=True))
