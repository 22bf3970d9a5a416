"""Time UperNet training steps: ExtreMAViT beside mmseg's MAE backbone with the same dims.

    python tools/benchmark_seg_step.py [--config mmseg_configs/upernet_extrema_b.py] [--batch 2] [--iters 2]

Both models use the config's neck, heads and data preprocessor; the MAE one swaps
in ``type='MAE'`` (BEiT-style blocks, relative position bias) with the same
width, depth, heads, crop and drop path. Each step is preprocessing, forward,
backward and the AdamW update on random images and labels; weights are random
(no checkpoint is read). The first step includes one-off allocation costs.
"""
import argparse
import copy
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

import extrema  # noqa: E402,F401
from extrema.engine.launch import setup_config  # noqa: E402


def random_batch(batch: int, crop: tuple, num_classes: int) -> dict:
    height, width = crop
    samples = [SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, num_classes, (1, height, width))),
                             metainfo=dict(img_shape=crop, pad_shape=crop, ori_shape=crop))
               for _ in range(batch)]
    inputs = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8) for _ in range(batch)]
    return dict(inputs=inputs, data_samples=samples)


def time_steps(model_cfg: dict, optim_cfg: dict, data: dict, iters: int, device: str) -> list:
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(model_cfg).to(device).train()
        optim_wrapper = build_optim_wrapper(model, optim_cfg)
    print(f'  {type(model.backbone).__name__}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params')
    seconds = []
    for _ in range(iters):
        start = time.perf_counter()
        model.train_step(copy.deepcopy(data), optim_wrapper)
        if device == 'cuda':
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        print(f'    step: {seconds[-1]:.2f} s')
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default='mmseg_configs/upernet_extrema_b.py')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--iters', type=int, default=2)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()

    cfg = setup_config(args.config)
    model_cfg = cfg.model.to_dict()
    model_cfg['pretrained'] = None
    backbone = model_cfg['backbone']
    backbone['init_cfg'] = None
    with DefaultScope.overwrite_default_scope('mmseg'):
        trunk = MODELS.build(backbone)
    crop = trunk.img_size
    data = random_batch(args.batch, crop, model_cfg['decode_head']['num_classes'])
    print(f'{args.config}: batch {args.batch}, crop {crop[0]}x{crop[1]}, {args.device}, '
          f'{torch.get_num_threads()} threads')

    results = {'ExtreMAViT': time_steps(model_cfg, cfg.optim_wrapper.to_dict(), data, args.iters, args.device)}

    mae_cfg = copy.deepcopy(model_cfg)
    mae_cfg['backbone'] = dict(
        type='MAE', img_size=crop, patch_size=trunk.patch_size, embed_dims=trunk.embed_dim,
        num_layers=trunk.depth, num_heads=trunk.num_heads, mlp_ratio=4, init_values=1.0,
        drop_path_rate=backbone['drop_path_rate'], out_indices=list(trunk.out_indices))
    mae_optim = cfg.optim_wrapper.to_dict()
    mae_optim.update(constructor='LayerDecayOptimizerConstructor',
                     paramwise_cfg=dict(num_layers=trunk.depth, layer_decay_rate=0.65))
    results['mmseg MAE'] = time_steps(mae_cfg, mae_optim, data, args.iters, args.device)

    for name, seconds in results.items():
        steady = seconds[1:] or seconds
        print(f'{name}: {sum(steady) / len(steady):.2f} s/iter (steps: {", ".join(f"{s:.2f}" for s in seconds)})')


if __name__ == '__main__':
    main()
