"""Self-attention maps of query patches (last block, averaged over heads) and the
instance token's class-attention map, overlaid on an image.

    python tools/analysis/attention_maps.py --checkpoint CKPT --image IMG --out OUT.png \
        [--branch teacher] [--queries 3] [--img-size 224]

Checkpoints without class-attention blocks (segmentation backbones) get the
self-attention maps only.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.logging import print_log  # noqa: E402

from extrema.analysis import attention_maps, plot_attention_maps  # noqa: E402
from extrema.analysis.cli import analysis_parser, load_inputs  # noqa: E402


def parse_args(argv=None):
    parser = analysis_parser(__doc__)
    parser.add_argument('--queries', type=int, default=3,
                        help='number of query patches (the centre, then a ring around it)')
    parser.add_argument('--query-patches', type=int, nargs='+', default=None, metavar='INDEX',
                        help='explicit query patches, row-major indices (overrides --queries)')
    parser.add_argument('--block', type=int, default=-1, help='self-attention block, 0-based (-1: last)')
    args = parser.parse_args(argv)
    if args.queries < 1:
        parser.error(f'--queries must be >= 1, got {args.queries}')
    return args


def main(argv=None):
    args = parse_args(argv)
    image, loaded = load_inputs(args)
    maps = attention_maps(loaded, image, args.img_size, args.queries, args.query_patches, args.block)
    if maps.class_attention is None:
        print_log(f'Skipped the class-attention map: the {loaded.checkpoint_format} checkpoint has no '
                  'class-attention blocks (blocks_token.*).', logger='current', level=30)
    title = f'{osp.basename(args.image)}, {maps.image.shape[-1]} px'
    path = plot_attention_maps(maps, title).save(args.out)
    print_log(f'Attention maps of patches {maps.queries} (block {maps.block + 1} of '
              f'{len(loaded.encoder.blocks)}) written to {path}', logger='current')
    return maps


if __name__ == '__main__':
    main()
