# Official fine-tuning optimiser: AdamW (0.9, 0.999), wd 0.05 (none on norms, biases and
# position/cls tables), layer decay 0.65: lr scale 0.65^(13 - layer), layer 0 = patch
# embedding and the learnable pos_embed, block i = i + 1, head and fc_norm = 13 (with
# pooling='class_attention' also the class-attention blocks and their cls_token). ``lr`` is per 256 images and is
# scaled to the real total batch by auto_scale_lr. No gradient clipping.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(num_layers=12, decay_rate=0.65),
)
auto_scale_lr = dict(base_batch_size=256, enable=True)
