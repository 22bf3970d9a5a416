# As the tiny BYOL config, with the predictor at 10x the lr of the rest (a faster predictor,
# as DirectPred / SimSiam find BYOL-style training needs): see docs/reproduction.md.
_base_ = ['./extrema_vit-tiny-p4_mask08x5_1xb128-byol-4e_fashion-mnist-60k-32px.py']
optim_wrapper = dict(paramwise_cfg=dict(lr_mult={'predictor.': 10.}))
