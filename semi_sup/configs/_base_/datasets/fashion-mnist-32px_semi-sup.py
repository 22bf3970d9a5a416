# The embedded default data: Fashion-MNIST from the Debian package, exported as 32 px RGB
# folders with all 60,000 training and 10,000 test images:
#   python tools/prepare_fashion_mnist.py --out data/fashion_mnist_full --size 32
# The labelled subset is class-balanced: percent=1 -> 60 images per class (600 labels).
data_root = 'data/fashion_mnist_full'
# Light augmentation: on 32 px grayscale with 600 labels, the ImageNet recipe (RandAugment,
# random erasing, Mixup/CutMix) underfits (see docs/semi_supervised.md).
train_transform = dict(input_size=32, is_training=True, scale=(0.5, 1.0), hflip=0.5, color_jitter=None,
                       interpolation='bicubic')
test_transform = dict(input_size=32, crop_pct=0.875, interpolation='bicubic')  # Resize 36, CenterCrop 32

train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='LabelledImageFolder', data_root=data_root, data_prefix='train', percent=1, seed=0,
                 transform=train_transform),
)
val_dataloader = dict(
    batch_size=500,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='LabelledImageFolder', data_root=data_root, data_prefix='val', transform=test_transform),
)
test_dataloader = val_dataloader
