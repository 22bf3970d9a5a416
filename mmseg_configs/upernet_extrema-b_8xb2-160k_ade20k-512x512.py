# ExtreMA ViT-B/16 + UperNet on ADE20K, 512x512 crops, batch 16 (8 GPUs x 2), 160k iterations.
# The CAE recipe that ExtreMA followed (mmseg's MAE config is the same up to the lr).
#   tools/dist_train.sh mmseg_configs/upernet_extrema_b.py 8 --amp
# lr: CAE swept 1e-4 .. 4e-4 (smaller for longer-pretrained models); 1e-4 as mmseg's MAE.
_base_ = [
    '_base_/models/upernet_extrema.py',
    'mmseg::_base_/datasets/ade20k.py',
    '_base_/schedules/schedule_160k_adamw-layer-decay.py',
    '_base_/default_runtime.py',
]
crop_size = (512, 512)
# test_cfg pads test images to the crop: the relative position bias needs full 512 windows.
# (A top-level data_preprocessor, so that the TTA model, which replaces the segmentor's, gets it too.)
data_preprocessor = dict(size=crop_size, test_cfg=dict(size=crop_size))
model = dict(
    # The official release (80% x 5 masks, colour aug, IN-1k 300 ep), or --cfg-options model.pretrained=PATH.
    pretrained='checkpoints/extrema_mask08x5_color_1k_300ep.pth',
    data_preprocessor=data_preprocessor,
)
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(num_layers=12, decay_rate=0.65))
train_dataloader = dict(batch_size=2)  # mmseg's ADE20K base has 4 per GPU
