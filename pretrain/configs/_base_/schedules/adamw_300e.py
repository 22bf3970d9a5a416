# AdamW (0.9, 0.95), wd 0.1 with no decay on 1-D params and cls/pos; no gradient clipping.
# lr = 1.5e-4 * total_batch / 256 through auto_scale_lr.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.1),
    constructor='DecayGroupsOptimWrapperConstructor',
)
auto_scale_lr = dict(base_batch_size=256, enable=True)
warmup_epochs = 40
max_epochs = 300
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=0., by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
