"""Locality probe: rank random crops of one image by the cosine similarity of
their instance features to a query crop, draw the top matches, and report the
Spearman correlation between similarity and box IoU with the query.

    python tools/analysis/locality_probe.py --checkpoint CKPT --image IMG --out OUT.png \
        [--num-crops 64] [--query-box 0.25 0.25 0.75 0.75] [--top 5]

Needs the instance branch (class-attention blocks). Writes the figure and
OUT.json (Spearman rho, p-value, top matches).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.logging import print_log  # noqa: E402

from extrema.analysis import locality_probe, plot_locality, require_instance_branch  # noqa: E402
from extrema.analysis.cli import analysis_parser, load_inputs, write_json  # noqa: E402
from extrema.analysis.locality import DEFAULT_QUERY_BOX  # noqa: E402


def parse_args(argv=None):
    parser = analysis_parser(__doc__)
    parser.add_argument('--num-crops', type=int, default=64, help='gallery size')
    parser.add_argument('--query-box', type=float, nargs=4, default=list(DEFAULT_QUERY_BOX),
                        metavar=('X0', 'Y0', 'X1', 'Y1'), help='query crop, fractions of the image')
    parser.add_argument('--scale', type=float, nargs=2, default=[0.1, 1.0], metavar=('MIN', 'MAX'),
                        help='gallery crop area, fractions of the image')
    parser.add_argument('--top', type=int, default=5, help='matches to draw')
    parser.add_argument('--seed', type=int, default=0, help='seed of the gallery boxes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    image, loaded = load_inputs(args)
    require_instance_branch(loaded, 'The locality probe')
    probe = locality_probe(loaded, image, args.img_size, args.num_crops, args.query_box, tuple(args.scale),
                           args.seed)
    summary = dict(checkpoint=args.checkpoint, image=args.image, branch=args.branch,
                   img_size=args.img_size or loaded.encoder.img_size[0], **probe.summary(args.top))
    path = plot_locality(probe, args.top, title=osp.basename(args.image)).save(args.out)
    json_path = write_json(summary, args.out)
    print(f'Spearman rank correlation (instance-feature similarity vs IoU with the query), '
          f'{args.num_crops} crops: {probe.spearman:.4f} (p = {probe.p_value:.2g})')
    print_log(f'Figure {path}, numbers {json_path}', logger='current')
    return probe


if __name__ == '__main__':
    main()
