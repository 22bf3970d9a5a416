# Fine-tune the tiny ExtreMA on 1% of the Fashion-MNIST labels (600 images), evaluated once at the
# end on all 10,000 test images. Starts from the model zoo entry (pretrain/zoo/, pretrained on the
# 60,000 unlabelled images); any other checkpoint: --cfg-options model.pretrained=PATH; the
# random-init baseline: --cfg-options model.pretrained=None. Results: docs/reproduction.md.
# The official model and optimiser with a short, light recipe for 270 steps on a CPU: no Mixup,
# CutMix, random erasing or RandAugment (label smoothing 0.1 stays), peak lr 4e-3, layer decay 0.75.
_base_ = [
    '_base_/models/extrema-classifier_vit-b-p16.py',
    '_base_/datasets/fashion-mnist-32px_semi-sup.py',
    '_base_/schedules/adamw_layer-decay.py',
    '_base_/default_runtime.py',
]
model = dict(
    num_classes=10,
    arch=dict(embed_dim=192, depth=6, num_heads=3, _delete_=True),
    img_size=32,
    patch_size=4,
    drop_path_rate=0.1,
    pretrained='pretrain/zoo/extrema_vit-tiny-p4_mask08x5_fashion-mnist-60k-32px/teacher_backbone.pth',
    # The pretraining normalisation of the tiny config; Mixup/CutMix and random erasing off
    # (probability 0, so that e.g. model.data_preprocessor.mixup.prob=1.0 turns them back on).
    data_preprocessor=dict(mean=(72.9, 72.9, 72.9), std=(90.0, 90.0, 90.0), mixup=dict(prob=0.0),
                           random_erasing=dict(probability=0.0)),
)
optim_wrapper = dict(optimizer=dict(lr=4e-3), paramwise_cfg=dict(num_layers=6, decay_rate=0.75))
warmup_epochs = 3
max_epochs = 30
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-6, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
env_cfg = dict(cudnn_benchmark=False)
