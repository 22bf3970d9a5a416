# The official ExtreMA fine-tuning model: student trunk, mean pooling, fc_norm, linear head.
# Regularisation as the official recipe: drop path 0.2, RandAugment (in the data pipeline),
# random erasing 0.25, Mixup 0.8 / CutMix 1.0, label smoothing 0.1.
model = dict(
    type='ExtreMAClassifier',
    num_classes=1000,
    arch='base',
    img_size=224,
    patch_size=16,
    drop_path_rate=0.2,
    pooling='mean',  # 'class_attention': classify from the pretrained class-attention output
    init_scale=0.001,
    # An official release or one of our pretraining checkpoints; None trains from scratch.
    pretrained='checkpoints/extrema_mask08x5_color_1k_300ep.pth',
    pretrained_branch='student',  # 'teacher': start from the EMA encoder
    strict_load=True,
    data_preprocessor=dict(
        type='ClassifierDataPreprocessor',
        label_smoothing=0.1,
        mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode='batch'),
        random_erasing=dict(probability=0.25, mode='pixel', max_count=1),
    ),
)
