"""Feature inversion: reconstruct an image from the distributed representation
(last self-attention block) of its visible patches, at several mask ratios.

    python tools/analysis/feature_inversion.py --checkpoint CKPT --image IMG --out OUT.png \
        [--mask-ratios 0.5 0.75 0.9] [--steps 100] [--img-size 224]

Pixels start at the dataset mean and are optimised (Adam) so that the visible
tokens' features match the real image's under the same mask, with a small
total-variation prior. Writes the figure and OUT.json (loss curves, PSNR).
"""
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.logging import print_log  # noqa: E402

from extrema.analysis import feature_inversion, plot_inversions  # noqa: E402
from extrema.analysis.cli import analysis_parser, load_inputs, write_json  # noqa: E402
from extrema.analysis.inversion import DEFAULT_MASK_RATIOS, DEFAULT_STEPS  # noqa: E402


def parse_args(argv=None):
    parser = analysis_parser(__doc__)
    parser.add_argument('--mask-ratios', type=float, nargs='+', default=list(DEFAULT_MASK_RATIOS))
    parser.add_argument('--steps', type=int, default=DEFAULT_STEPS, help='optimisation steps per mask ratio')
    parser.add_argument('--lr', type=float, default=0.1, help='Adam step, in normalised pixel units')
    parser.add_argument('--tv-weight', type=float, default=0.05, help='total-variation prior weight')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random masks')
    parser.add_argument('--log-every', type=int, default=25, help='log the loss every N steps (0: never)')
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f'--steps must be >= 1, got {args.steps}')
    bad = [r for r in args.mask_ratios if not 0 <= r < 1]
    if bad:
        parser.error(f'--mask-ratios must be in [0, 1), got {bad}')
    return args


def main(argv=None):
    args = parse_args(argv)
    image, loaded = load_inputs(args)
    start = time.perf_counter()
    pixels, inversions = feature_inversion(loaded, image, args.img_size, args.mask_ratios, args.steps,
                                           args.lr, args.tv_weight, args.seed, args.log_every)
    seconds = time.perf_counter() - start
    for inversion in inversions:
        print_log(f'mask {inversion.mask_ratio:.2f}: relative feature error {inversion.losses[0]:.4f} -> '
                  f'{inversion.losses[-1]:.4f}, visible-patch PSNR {inversion.visible_psnr:.2f} dB',
                  logger='current')
    title = f'{osp.basename(args.image)}, {pixels.shape[-1]} px'
    path = plot_inversions(pixels, inversions, loaded.mean, loaded.encoder.patch_size, title).save(args.out)
    write_json(dict(checkpoint=args.checkpoint, image=args.image, img_size=pixels.shape[-1],
                    steps=args.steps, lr=args.lr, tv_weight=args.tv_weight, seconds=round(seconds, 2),
                    inversions=[dict(mask_ratio=i.mask_ratio, visible_patches=i.visible.tolist(),
                                     visible_psnr_db=round(i.visible_psnr, 3),
                                     relative_feature_error=i.losses) for i in inversions]), args.out)
    print_log(f'Inverted {len(inversions)} mask ratios x {args.steps} steps in {seconds:.1f} s; '
              f'figure {path}', logger='current')
    return pixels, inversions


if __name__ == '__main__':
    main()
