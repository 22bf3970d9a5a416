# The user-facing name of the ViT-B recipe:
#   python tools/train.py mmseg_configs/upernet_extrema_b.py --cfg-options model.pretrained=PATH
#   python tools/test.py mmseg_configs/upernet_extrema_b.py work_dirs/upernet_extrema_b/iter_160000.pth
_base_ = ['upernet_extrema-b_8xb2-160k_ade20k-512x512.py']
