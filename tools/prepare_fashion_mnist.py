"""Export Fashion-MNIST (Debian ``dataset-fashion-mnist``) as ImageNet-layout folders.

    python tools/prepare_fashion_mnist.py --out data/fashion_mnist --size 32
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from extrema.data.fashion_mnist import export_image_folder  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--out', default='data/fashion_mnist')
    parser.add_argument('--size', type=int, default=32, help='side of the exported RGB images')
    parser.add_argument('--train-per-class', type=int, default=None, help='default: all 6,000')
    parser.add_argument('--val-per-class', type=int, default=None, help='default: all 1,000')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    counts = export_image_folder(args.out, args.size, args.train_per_class, args.val_per_class, args.seed)
    print(f'Fashion-MNIST in {args.out}: ' + ', '.join(f'{k} {v} images' for k, v in counts.items()))


if __name__ == '__main__':
    main()
