# A tiny ExtreMA that pretrains on one CPU in minutes on the embedded Fashion-MNIST
# data (make it with: python tools/prepare_fashion_mnist.py --out data/fashion_mnist).
# 32x32 images, 4x4 patches: 64 tokens, 80% masking x 5 disjoint masks of 12 tokens.
# InfoNCE (model.loss_type, an option of the official code): with one lr for every parameter
# the paper's BYOL collapses this model within a few hundred steps (docs/reproduction.md; the
# ..._byol-pred10x-... config is a BYOL that does not). For the paper's loss: model.loss_type='byol'.
_base_ = [
    '_base_/models/extrema_vit-b-p16.py',
    '_base_/schedules/adamw_300e.py',
    '_base_/default_runtime.py',
]
model = dict(
    arch=dict(embed_dim=192, depth=6, num_heads=3, _delete_=True),
    img_size=32,
    patch_size=4,
    proj_hidden_dim=1024,
    proj_dim=128,
    pred_hidden_dim=1024,
    loss_type='infonce',
    temperature=0.2,
    base_momentum=0.99,
    data_preprocessor=dict(type='TwoViewDataPreprocessor', mean=(72.9, 72.9, 72.9), std=(90.0, 90.0, 90.0),
                           color_mode='color'),
)
train_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RandomCropImageFolder', data_root='data/fashion_mnist', data_prefix='train',
                 img_size=32, crop_scale=(0.2, 1.0)),
)
warmup_epochs = 1
max_epochs = 8
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=0., by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# Fixed lr for this batch (auto-scaling would give 1.5e-4 * 128 / 256).
optim_wrapper = dict(optimizer=dict(lr=5e-4))
auto_scale_lr = dict(enable=False)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=1, max_keep_ckpts=2))
env_cfg = dict(cudnn_benchmark=False)
