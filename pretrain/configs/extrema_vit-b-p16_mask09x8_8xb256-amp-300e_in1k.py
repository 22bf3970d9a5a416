# 90% masking x 8 disjoint masks (official: linear 68.4 / fine-tune 83.5).
_base_ = ['./extrema_vit-b-p16_mask08x5_8xb256-amp-300e_in1k.py']
model = dict(mask_ratio=0.9, num_masks=8)
