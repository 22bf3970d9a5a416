"""Speed and memory of ExtreMA beside its baselines, measured in one process.

    python tools/benchmark.py --quick                    # CPU, under 2 minutes
    python tools/benchmark.py                            # CPU, all scenarios (long)
    python tools/benchmark.py --device cuda --amp bfloat16 --compile --batch-size 256

Scenarios (``--scenarios``):
  pretrain-step        one ExtreMA training iteration (EMA, forward, backward, AdamW) beside:
                       the same step with K=1, a naive teacher-per-mask step, a supervised timm
                       ViT step on all tokens, and the roofline matmul of the dominant shape.
  seg-step             one UperNet iteration, ExtreMAViT beside mmseg's MAE with the same dims.
  backbone-inference   images/s of ExtreMAViT beside timm's VisionTransformer.
  data                 pretraining data throughput per worker (decode, crop, flip) vs the step's
                       consumption, and the device time of the two colour views per batch.

Every time is a median over ``--repeats`` timed rounds after ``--warmup`` rounds; the
variants of a scenario run round-robin, so ratios between them are robust to load.
Results are printed as tables and written to ``--out`` as JSON.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import extrema  # noqa: E402,F401  (shims and registration)
from extrema.benchmark.scenarios import SCENARIOS, run  # noqa: E402
from extrema.benchmark.steps import SDPA_BACKENDS  # noqa: E402

# mode -> defaults (a dict keyed by device type where they differ); the command line overrides them.
PRESETS = {
    'smoke': dict(archs=['micro'], masks=['0.75x4'], img_size=32, patch_size=8, batch_size=2,
                  warmup=0, repeats=1, infer_batch=2, seg_arch='micro', seg_size=64, seg_batch=2,
                  data_images=4, data_size=32, loader_batches=0, proj_hidden_dim=64, proj_dim=32, threads=1),
    'quick': dict(archs={'cpu': ['small'], 'cuda': ['base']}, masks=['0.8x5'], img_size=224, patch_size=16,
                  batch_size={'cpu': 4, 'cuda': 128}, warmup=1, repeats={'cpu': 2, 'cuda': 5},
                  infer_batch={'cpu': 8, 'cuda': 128}, seg_arch={'cpu': 'micro', 'cuda': 'base'},
                  seg_size={'cpu': 128, 'cuda': 512}, seg_batch=2, data_images=24, data_size=224,
                  loader_batches=0),
    'full': dict(archs=['small', 'base'], masks=['0.8x5', '0.9x8'], img_size=224, patch_size=16,
                 batch_size=None, warmup={'cpu': 1, 'cuda': 2}, repeats={'cpu': 3, 'cuda': 10},
                 infer_batch={'cpu': 32, 'cuda': 256}, seg_arch='base', seg_size=512, seg_batch=2,
                 data_images=64, data_size=224, loader_batches={'cpu': 0, 'cuda': 32}),
}

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scenarios', nargs='+', choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--quick', action='store_true', help='ViT-S, small batches, 2 repeats (CPU < 2 min)')
    mode.add_argument('--smoke', action='store_true', help="the 'micro' ViT (64-d, 2 blocks), 1 repeat: a smoke test")
    parser.add_argument('--archs', nargs='+', help="ViT sizes: small base large (or 'micro': 64-d, 2 blocks)")
    parser.add_argument('--masks', nargs='+', help='mask_ratio x num_masks, e.g. 0.8x5 0.9x8')
    parser.add_argument('--batch-size', type=int, help='pretraining batch (default: per arch and device)')
    parser.add_argument('--warmup', type=int)
    parser.add_argument('--repeats', type=int)
    parser.add_argument('--amp', choices=['bfloat16', 'float16', 'none'], default=None,
                        help='autocast dtype (default: bfloat16 on CUDA, none on CPU; bfloat16 on CPU '
                             'through AutocastOptimWrapper)')
    parser.add_argument('--compile', action='store_true',
                        help='also time the ExtreMA step with torch.compile on the loss forward')
    parser.add_argument('--compile-modes', nargs='+', default=['default'],
                        help='torch.compile modes to time with --compile, one variant each '
                             '(e.g. default max-autotune-no-cudagraphs)')
    parser.add_argument('--sdpa-backends', nargs='+', choices=list(SDPA_BACKENDS), default=[],
                        help='pretrain-step: also time the eager ExtreMA step with attention '
                             'restricted to each of these backends (default: torch picks), and '
                             'attention alone at the student and teacher shapes per backend')
    parser.add_argument('--no-baselines', action='store_true',
                        help='pretrain-step: time only ExtreMA (and the compiled variant)')
    parser.add_argument('--profile', action='store_true',
                        help='pretrain-step: print the top operators of one ExtreMA step (the last '
                             'compiled variant with --compile) and, on CUDA, device time by kernel kind')
    parser.add_argument('--peak-tflops', type=float,
                        help='nominal dense peak of the device for the dtype (CPU: e.g. 0.166)')
    parser.add_argument('--infer-batch', type=int)
    parser.add_argument('--seg-arch')
    parser.add_argument('--seg-size', type=int)
    parser.add_argument('--seg-batch', type=int)
    parser.add_argument('--data-images', type=int)
    parser.add_argument('--data-size', type=int)
    parser.add_argument('--loader-batches', type=int,
                        help='data: also time this many batches of a DataLoader with the default workers')
    parser.add_argument('--loader-workers', nargs='+', type=int,
                        help='data: worker counts for the DataLoader timing (default: the config\'s)')
    parser.add_argument('--data-config',
                        default=osp.join(ROOT, 'pretrain/configs/_base_/datasets/imagenet_random-crop.py'),
                        help="data: the dataset config whose num_workers is the DataLoader timing's default")
    parser.add_argument('--threads', type=int, help='torch intra-op threads (CPU)')
    parser.add_argument('--out', default=None, help='JSON file (default: work_dirs/benchmark/<time>.json)')
    args = parser.parse_args(argv)
    args.device = torch.device(args.device)
    preset = PRESETS['smoke' if args.smoke else 'quick' if args.quick else 'full']
    for key, value in preset.items():
        if isinstance(value, dict):
            value = value.get(args.device.type, value.get('cpu'))
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.compile:
        args.warmup = max(args.warmup, 2)  # compilation (and any recompilation) stays out of the timings
    if args.amp is None:
        args.amp = 'bfloat16' if args.device.type == 'cuda' else 'none'
    args.amp = None if args.amp == 'none' else args.amp
    if args.amp == 'float16' and args.device.type != 'cuda':
        parser.error('--amp float16 needs CUDA (fp16 needs a loss scale); on a CPU use --amp bfloat16, '
                     'which pays only where the CPU has fast native bf16 (see docs/benchmark.md)')
    args.masks = [parse_masks(m) for m in args.masks]
    return args


def parse_masks(text: str):
    ratio, count = text.lower().split('x')
    return float(ratio), int(count)

def main(argv=None) -> dict:
    return run(parse_args(argv))


if __name__ == '__main__':
    main()
