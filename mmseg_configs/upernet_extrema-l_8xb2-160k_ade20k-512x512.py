# ExtreMA ViT-L/16 + UperNet on ADE20K. No ViT-L recipe is published; features come from
# blocks 7, 11, 15, 23 (as mmseg's ViT-L configs) and the layer decay is 0.9 over 24 blocks
# (0.65 ** 25 would all but freeze the early blocks). Set the checkpoint with
# --cfg-options model.pretrained=PATH.
_base_ = ['upernet_extrema-b_8xb2-160k_ade20k-512x512.py']
model = dict(
    pretrained=None,
    backbone=dict(arch='large', out_indices=(7, 11, 15, 23)),
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024),
)
optim_wrapper = dict(paramwise_cfg=dict(num_layers=24, decay_rate=0.9))
