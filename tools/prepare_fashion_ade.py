"""Generate Fashion-ADE, the embedded segmentation data, in ADE20K layout.

    python tools/prepare_fashion_ade.py --out data/fashion_ade

Writes images/{training,validation}/*.jpg and annotations/{training,validation}/*.png
(0 = ignore, 1 = background, 2..11 = Fashion-MNIST class + 2). About 5 s for the defaults.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from extrema.data.fashion_ade import generate_fashion_ade  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--out', default='data/fashion_ade')
    parser.add_argument('--train-images', type=int, default=1000)
    parser.add_argument('--val-images', type=int, default=100)
    parser.add_argument('--min-side', type=int, default=64, help='smallest scene side in pixels')
    parser.add_argument('--max-side', type=int, default=96, help='largest scene side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    counts = generate_fashion_ade(args.out, args.train_images, args.val_images, args.min_side,
                                  args.max_side, args.seed)
    print(f'Fashion-ADE in {args.out}: ' + ', '.join(f'{k} {v} scenes' for k, v in counts.items()))


if __name__ == '__main__':
    main()
