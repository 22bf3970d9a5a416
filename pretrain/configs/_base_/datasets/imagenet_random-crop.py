# ImageNet-layout folder: data/imagenet/train/<wnid>/<image>.
train_dataloader = dict(
    batch_size=256,  # per GPU; the official run is 8 x 256
    num_workers=12,  # per GPU: the decode+crop throughput a compiled H200 step needs (docs/benchmark.md)
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='RandomCropImageFolder',
        data_root='data/imagenet',
        data_prefix='train',
        img_size=224,
        crop_scale=(0.2, 1.0),
    ),
)
