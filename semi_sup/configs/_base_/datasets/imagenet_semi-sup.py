# ImageNet: data/imagenet/train/<wnid>/<file> and data/imagenet/val/<wnid>/<file>
# (or a flat val/ folder with ann_file='meta/val.txt': "<file> <label>" lines).
# The labelled subset is a SimCLR split file: split='1percent' or '10percent'.
data_root = 'data/imagenet'
# timm create_transform arguments; items stay uint8 and are normalised on the device.
train_transform = dict(input_size=224, is_training=True, scale=(0.08, 1.0), hflip=0.5,
                       auto_augment='rand-m9-mstd0.5-inc1', interpolation='bicubic')
test_transform = dict(input_size=224, crop_pct=0.875, interpolation='bicubic')  # Resize 256, CenterCrop 224

train_dataloader = dict(
    batch_size=32,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='LabelledImageFolder', data_root=data_root, data_prefix='train', split='1percent',
                 allow_missing=False, transform=train_transform),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='LabelledImageFolder', data_root=data_root, data_prefix='val', transform=test_transform),
)
test_dataloader = val_dataloader
