model = dict(
    type='ExtreMA',
    arch='base',
    img_size=224,
    patch_size=16,
    drop_path_rate=0.1,
    num_class_attn_blocks=2,
    layer_scale_init=0.1,
    proj_hidden_dim=4096,
    proj_dim=256,
    pred_hidden_dim=4096,
    mask_ratio=0.8,
    num_masks=5,
    disjoint_masks=True,
    loss_type='byol',
    base_momentum=0.996,
    # One shared crop per image; two colour draws of it on the device (student, teacher).
    data_preprocessor=dict(type='TwoViewDataPreprocessor', color_mode='color'),
)
