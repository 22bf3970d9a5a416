# mmpretrain 1.2's MAE at the tiny ExtreMA's size (192-d, 6 blocks, 3 heads, 4-px patches, 32 px) on
# the same 60,000 Fashion-MNIST training images: the peer row of the small-scale reproduction
# (docs/reproduction.md). Model, pipeline and loss are mmpretrain's own; the schedule, lr, batch,
# seed, pixel statistics and checkpoint steps come from the InfoNCE 60k config, so that the runs
# differ in the method only. The decoder (128-d, 2 blocks) is MAE's light-decoder design scaled down.
# Data: python tools/prepare_fashion_mnist.py --out data/fashion_mnist
_base_ = ['./extrema_vit-tiny-p4_mask08x5_1xb128-infonce-4e_fashion-mnist-60k-32px.py']
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmpretrain.models', 'mmpretrain.datasets', 'extrema'],
                      allow_failed_imports=False)
custom_hooks = []  # MAE has no teacher: no momentum update, no ExtreMA checkpoint metadata
model = dict(
    _delete_=True,
    type='MAE',
    backbone=dict(type='MAEViT', arch=dict(embed_dims=192, num_layers=6, num_heads=3, feedforward_channels=768),
                  img_size=32, patch_size=4, mask_ratio=0.75),
    neck=dict(type='MAEPretrainDecoder', num_patches=64, patch_size=4, in_chans=3, embed_dim=192,
              decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4.),
    head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=4,
              loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=(72.9, 72.9, 72.9), std=(90.0, 90.0, 90.0),
                           to_rgb=True),
    init_cfg=[dict(type='Xavier', layer='Linear', distribution='uniform'),
              dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)],
)
train_dataloader = dict(
    dataset=dict(_delete_=True, type='CustomDataset', data_root='data/fashion_mnist', data_prefix='train',
                 with_label=False,
                 pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.0), backend='pillow',
                                interpolation='bicubic'),
                           dict(type='RandomFlip', prob=0.5),
                           dict(type='PackInputs')]))
# MAE's optimizer: AdamW betas (0.9, 0.95), wd 0.05, no decay on norms, biases, pos/cls/mask tokens.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'ln': dict(decay_mult=0.0), 'bias': dict(decay_mult=0.0),
                                    'pos_embed': dict(decay_mult=0.), 'mask_token': dict(decay_mult=0.),
                                    'cls_token': dict(decay_mult=0.)}))
