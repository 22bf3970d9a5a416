# End-to-end fine-tuning of ExtreMA ViT-B/16 on the 10% ImageNet labels (128,116 images of the
# SimCLR split), evaluated on the 50,000 validation images.
# Same model, optimiser and regularisation as the official 100-epoch full-data recipe; the
# schedule is adapted to 10% of the labels (see docs/semi_supervised.md): total batch 512
# (8 GPUs x 64), 200 epochs (50k steps), peak lr 5e-4 (half the full-data base lr),
# 20 warm-up epochs. These are untuned starting points.
_base_ = [
    '_base_/models/extrema-classifier_vit-b-p16.py',
    '_base_/datasets/imagenet_semi-sup.py',
    '_base_/schedules/adamw_layer-decay.py',
    '_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=64, dataset=dict(split='10percent'))
optim_wrapper = dict(optimizer=dict(lr=2.5e-4))
warmup_epochs = 20
max_epochs = 200
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-6, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=10)
default_hooks = dict(checkpoint=dict(interval=10))
