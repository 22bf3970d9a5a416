# The tiny ExtreMA on all 60,000 Fashion-MNIST training images (no labels) with the paper's BYOL
# loss and momentum 0.996: the small-scale reproduction's BYOL row. Data, schedule and checkpoints
# are those of the InfoNCE row.
# Measurements: docs/reproduction.md.
_base_ = ['./extrema_vit-tiny-p4_mask08x5_1xb128-infonce-4e_fashion-mnist-60k-32px.py']
model = dict(loss_type='byol', base_momentum=0.996)
