# As the 1% config, on 10% of the Fashion-MNIST labels (6,000 images): batch 128, 40 epochs
# (1,880 steps): shorter schedules stop well short of what fine-tuning reaches at 10%, from random
# init and from the zoo entries alike (docs/reproduction.md, "Fine-tuning at 10%: how long").
_base_ = ['finetune_extrema-tiny_fashion-mnist-1pct.py']
train_dataloader = dict(batch_size=128, dataset=dict(percent=10))
warmup_epochs = 1
max_epochs = 40
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-6, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
