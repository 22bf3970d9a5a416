# End-to-end fine-tuning of ExtreMA ViT-B/16 on the 1% ImageNet labels (12,811 images of the
# SimCLR split), evaluated on the 50,000 validation images.
# Same model, optimiser and regularisation as the official 100-epoch full-data recipe; the
# schedule is adapted to 1% of the labels (see docs/semi_supervised.md): total batch 256
# (8 GPUs x 32) for 50 steps per epoch, 800 epochs (40k steps), peak lr 1e-4 (a fifth of the
# full-data base lr), 50 warm-up epochs. These are untuned starting points.
_base_ = [
    '_base_/models/extrema-classifier_vit-b-p16.py',
    '_base_/datasets/imagenet_semi-sup.py',
    '_base_/schedules/adamw_layer-decay.py',
    '_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=32, dataset=dict(split='1percent'))
optim_wrapper = dict(optimizer=dict(lr=1e-4))
warmup_epochs = 50
max_epochs = 800
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-6, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=40)
default_hooks = dict(checkpoint=dict(interval=40))
