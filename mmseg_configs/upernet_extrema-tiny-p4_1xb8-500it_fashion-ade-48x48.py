# A tiny UperNet + ExtreMAViT that trains on one CPU in minutes on the embedded Fashion-ADE data.
# The trunk matches the tiny pretraining config (embed 192, depth 6, heads 3, patch 4), so
#   --cfg-options model.pretrained=work_dirs/pretrain_tiny/epoch_8.pth
# fine-tunes from it; without it the backbone is randomly initialised.
_base_ = [
    '_base_/models/upernet_extrema.py',
    '_base_/datasets/fashion_ade.py',
    '_base_/schedules/schedule_160k_adamw-layer-decay.py',
    '_base_/default_runtime.py',
]
crop_size = (48, 48)
num_classes = 11
# Whole-image inference (one pass per image, cheap on CPU): pad test images to multiples of the patch.
data_preprocessor = dict(size=crop_size, test_cfg=dict(size_divisor=4))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        arch=dict(embed_dim=192, depth=6, num_heads=3, _delete_=True),
        img_size=48,
        patch_size=4,
        out_indices=(1, 2, 3, 5),
        use_rel_pos_bias=False,  # so that whole images of any size can be segmented
        init_cfg=None),
    # 4-pixel patches: strides 2, 4, 8, 16 (the ViT-B pyramid is 4, 8, 16, 32).
    neck=dict(embed_dim=192, rescales=[2, 1, 0.5, 0.25]),
    decode_head=dict(in_channels=[192, 192, 192, 192], channels=64, num_classes=num_classes),
    auxiliary_head=dict(in_channels=192, channels=32, num_classes=num_classes),
    test_cfg=dict(mode='whole', _delete_=True))
max_iters = 500
# 500 iterations instead of 160k: a larger lr and a milder layer decay than the ADE20K recipe.
optim_wrapper = dict(optimizer=dict(lr=2e-3), paramwise_cfg=dict(num_layers=6, decay_rate=0.8))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=50, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1, save_best='mIoU'))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
