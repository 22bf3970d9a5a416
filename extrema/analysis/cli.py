"""Arguments and input checks shared by the ``tools/analysis`` command lines."""
import argparse
import json
import os
from typing import Tuple

from PIL import Image

from .figures import check_png_path
from .images import load_image
from .loading import LoadedEncoder, load_encoder


def analysis_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--checkpoint', required=True,
                        help='ExtreMA pretraining checkpoint (ours or official), converted backbone '
                             'or mmseg segmentor')
    parser.add_argument('--image', required=True, help='input image (any format Pillow reads)')
    parser.add_argument('--out', required=True, help='output figure, .png')
    parser.add_argument('--branch', default='teacher', choices=['teacher', 'student'],
                        help='encoder of a pretraining checkpoint (default: the EMA teacher)')
    parser.add_argument('--img-size', type=int, default=None,
                        help='input side in pixels (default: the checkpoint\'s training size)')
    parser.add_argument('--num-heads', type=int, default=None,
                        help='attention heads, when the checkpoint does not store its config '
                             '(default: width / 64)')
    parser.add_argument('--device', default='cpu')
    return parser


def load_inputs(args: argparse.Namespace) -> Tuple[Image.Image, LoadedEncoder]:
    """Check the output path and read the image (both fail fast), then load the encoder."""
    check_png_path(args.out)
    if args.img_size is not None and args.img_size <= 0:
        raise ValueError(f'--img-size must be positive, got {args.img_size}.')
    image = load_image(args.image)
    loaded = load_encoder(args.checkpoint, args.branch, num_heads=args.num_heads, device=args.device)
    return image, loaded


def write_json(result: dict, png_path: str) -> str:
    """``result`` next to the figure: ``NAME.png`` -> ``NAME.json``."""
    path = os.path.splitext(png_path)[0] + '.json'
    with open(path, 'w') as f:
        json.dump(result, f, indent=2)
    return path

