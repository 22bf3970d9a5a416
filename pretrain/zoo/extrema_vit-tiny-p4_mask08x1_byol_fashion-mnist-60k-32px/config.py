# The BYOL model zoo entry's pretraining config, as mmengine resolved it for the run that made
# the weights (the shipped recipe is
# pretrain/configs/extrema_vit-tiny-p4_mask08x1_1xb128-byol-pred10x-16e_fashion-mnist-60k-32px.py;
# the weights are its teacher at the last of its 7,488 iterations; README.md).
auto_scale_lr = dict(base_batch_size=256, enable=False)
custom_hooks = [
    dict(type='MomentumUpdateHook'),
    dict(type='ExtreMACheckpointHook'),
]
custom_imports = dict(
    allow_failed_imports=False, imports=[
        'extrema',
    ])
default_hooks = dict(
    checkpoint=dict(
        backend_args=dict(backend='atomic_local'),
        by_epoch=False,
        interval=936,
        max_keep_ckpts=-1,
        save_last=True,
        type='CheckpointHook'),
    logger=dict(interval=10, type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    timer=dict(type='IterTimerHook'))
default_scope = 'extrema'
env_cfg = dict(
    cudnn_benchmark=False,
    dist_cfg=dict(backend='nccl'),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
launcher = 'none'
load_from = None
log_level = 'INFO'
log_processor = dict(by_epoch=True, window_size=10)
max_epochs = 16
model = dict(
    arch=dict(depth=6, embed_dim=192, num_heads=3),
    base_momentum=0.996,
    data_preprocessor=dict(
        color_mode='color',
        mean=(
            72.9,
            72.9,
            72.9,
        ),
        std=(
            90.0,
            90.0,
            90.0,
        ),
        type='TwoViewDataPreprocessor'),
    disjoint_masks=True,
    drop_path_rate=0.1,
    img_size=32,
    layer_scale_init=0.1,
    loss_type='byol',
    mask_ratio=0.8,
    num_class_attn_blocks=2,
    num_masks=1,
    patch_size=4,
    pred_hidden_dim=1024,
    proj_dim=128,
    proj_hidden_dim=1024,
    temperature=0.2,
    type='ExtreMA')
optim_wrapper = dict(
    constructor='DecayGroupsOptimWrapperConstructor',
    optimizer=dict(
        betas=(
            0.9,
            0.95,
        ),
        fused=True,
        lr=6.25e-05,
        type='AdamW',
        weight_decay=0.1),
    paramwise_cfg=dict(lr_mult=dict({'predictor.': 10.0})),
    type='OptimWrapper')
param_scheduler = [
    dict(
        begin=0,
        by_epoch=True,
        convert_to_iter_based=True,
        end=1,
        start_factor=1e-06,
        type='LinearLR'),
    dict(
        T_max=15,
        begin=1,
        by_epoch=True,
        convert_to_iter_based=True,
        end=16,
        eta_min=0.0,
        type='CosineAnnealingLR'),
]
randomness = dict(diff_rank_seed=True, seed=0)
resume = False
train_cfg = dict(max_epochs=16, type='EpochBasedTrainLoop')
train_dataloader = dict(
    batch_size=128,
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        crop_scale=(
            0.2,
            1.0,
        ),
        data_prefix='train',
        data_root='data/fashion_mnist',
        img_size=32,
        type='RandomCropImageFolder'),
    drop_last=True,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(shuffle=True, type='DefaultSampler'))
vis_backends = [
    dict(type='LocalVisBackend'),
]
visualizer = dict(
    type='Visualizer', vis_backends=[
        dict(type='LocalVisBackend'),
    ])
warmup_epochs = 1
