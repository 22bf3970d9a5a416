# mmseg's 160k schedule with the CAE / MAE / BEiT transfer optimiser: AdamW with layer-wise lr
# decay, 1500-iteration linear warm-up, then poly 1.0; keeps the best-mIoU checkpoint.
_base_ = ['mmseg::_base_/schedules/schedule_160k.py']
optimizer = None  # mmseg's SGD variable, unused: the optimizer is optim_wrapper.optimizer
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(num_layers=12, decay_rate=0.65))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=3, save_best='mIoU', rule='greater'))
