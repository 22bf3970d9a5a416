# UperNet on the ExtreMA ViT-B trunk: blocks 3, 5, 7, 11 -> Feature2Pyramid (x4, x2, x1, x0.5).
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    # The pretrained ExtreMA checkpoint (ours, a converted backbone file or an official
    # release); set it here or with --cfg-options model.pretrained=PATH.
    pretrained=None,
    backbone=dict(
        type='ExtreMAViT',
        arch='base',
        img_size=512,
        patch_size=16,
        drop_path_rate=0.1,
        use_rel_pos_bias=True,
        out_indices=(3, 5, 7, 11),
        # branch: 'student' (as the official fine-tuning) or 'teacher' (the EMA encoder).
        init_cfg=dict(type='Pretrained', branch='student', strict=False)),
    neck=dict(type='Feature2Pyramid', embed_dim=768, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg),
    decode_head=dict(
        type='UPerHead',
        in_channels=[768, 768, 768, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=768,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=768,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
