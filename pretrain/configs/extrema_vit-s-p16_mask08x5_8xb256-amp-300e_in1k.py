# ViT-S/16 with the ViT-B recipe (no official ViT-S run exists).
_base_ = ['./extrema_vit-b-p16_mask08x5_8xb256-amp-300e_in1k.py']
model = dict(arch='small')
