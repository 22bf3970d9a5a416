# ViT-L/16 with the ViT-B recipe (no official ViT-L run exists). The official
# help text suggests LayerScale 1e-5 for large models.
_base_ = ['./extrema_vit-b-p16_mask08x5_8xb256-amp-300e_in1k.py']
model = dict(arch='large', layer_scale_init=1e-5)
