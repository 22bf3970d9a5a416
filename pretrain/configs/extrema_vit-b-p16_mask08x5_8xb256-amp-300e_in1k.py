# The released ExtreMA ViT-B/16: 80% masking x 5 disjoint masks, colour augmentation,
# 300 epochs on ImageNet-1k, 8 GPUs x 256. Linear 73.3 / fine-tune 83.7 (official README).
# Train with --amp (the official run used fp16 autocast).
_base_ = [
    '_base_/models/extrema_vit-b-p16.py',
    '_base_/datasets/imagenet_random-crop.py',
    '_base_/schedules/adamw_300e.py',
    '_base_/default_runtime.py',
]
