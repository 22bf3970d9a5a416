"""Convert checkpoints.

    # official release -> our format (loads with extrema.load_pretrained and --resume-free training)
    python tools/convert_checkpoint.py extrema_mask08x5_color_1k_300ep.pth extrema_b.pth --to extrema
    # ours, official, mmseg or mmpretrain -> one encoder, for segmentation and semi-supervised transfer
    python tools/convert_checkpoint.py work_dirs/run/epoch_300.pth vit-b_teacher.pth --to backbone --branch teacher
    # the same in half the bytes (every loader casts it back to the model's dtype)
    python tools/convert_checkpoint.py work_dirs/run/epoch_300.pth vit-b_teacher_fp16.pth --to backbone \\
        --dtype float16

The output holds tensors and a plain ``meta`` dict only, so it loads with
``torch.load(weights_only=True)``; ``meta`` records the architecture (``extrema_config``)
and the pixel normalisation of the pretraining (``data_preprocessor``). Every conversion
is verified by loading the result into the matching model and printing its missing and
unexpected keys.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

from extrema import ExtreMA  # noqa: E402
from extrema.checkpoint import (CONFIG_KEY, INSTANCE_KEY, EncoderWeights, atomic_save, detect_format,  # noqa: E402
                                extrema_config, load_file, pixel_normalization, report_load,
                                to_extrema_state_dict)

DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16}


def convert_to_extrema(path: str, strict: bool):
    checkpoint = load_file(path)
    state = to_extrema_state_dict(checkpoint)
    config = extrema_config(checkpoint, state)
    missing, unexpected = report_load(ExtreMA(**config), state, strict=strict, name='ExtreMA')
    mean, std = pixel_normalization(checkpoint)
    meta = {CONFIG_KEY: config, 'data_preprocessor': dict(mean=list(mean), std=list(std)),
            'source_format': detect_format(checkpoint)}
    return dict(state_dict=state, meta=meta), missing, unexpected


def convert_to_backbone(path: str, branch: str, keep_projector: bool, strict: bool, num_heads=None):
    weights = EncoderWeights.read(path, branch, num_heads)
    # A trunk-only source (mmseg, mmpretrain) keeps no [cls] token or final LN: the trunk has none.
    dropped = [k for k in weights.state if (k.startswith('projector.') and not keep_projector)
               or (not weights.has_class_attention and INSTANCE_KEY.match(k))]
    encoder = {k: v for k, v in weights.state.items() if k not in dropped}
    missing, unexpected = report_load(weights.build(projector=keep_projector), encoder, strict=strict,
                                      name=f'{branch} encoder', ignored=dropped)
    meta = {'format': 'extrema-backbone', 'branch': branch, 'source_format': weights.format,
            CONFIG_KEY: weights.config, 'data_preprocessor': dict(mean=list(weights.mean), std=list(weights.std))}
    return dict(state_dict=encoder, meta=meta), missing, unexpected


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='ExtreMA checkpoint (official or ours); with --to backbone also a '
                                    'backbone, mmseg or mmpretrain ViT file')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--to', choices=['extrema', 'backbone'], required=True)
    parser.add_argument('--branch', choices=['student', 'teacher'], default='student',
                        help='encoder to export with --to backbone (default: student, as the official fine-tuning)')
    parser.add_argument('--keep-projector', action='store_true', help='keep the projector (projector.*) in a backbone file')
    parser.add_argument('--num-heads', type=int, help='head count, for files that do not record it')
    parser.add_argument('--dtype', choices=sorted(DTYPES), default='float32',
                        help='dtype of the floating-point tensors written (float16: half the size)')
    parser.add_argument('--strict', action='store_true', help='fail on any missing or unexpected key')
    args = parser.parse_args(argv)
    if args.to == 'extrema':
        converted, missing, unexpected = convert_to_extrema(args.src, args.strict)
    else:
        converted, missing, unexpected = convert_to_backbone(args.src, args.branch, args.keep_projector,
                                                             args.strict, args.num_heads)
    dtype = DTYPES[args.dtype]
    converted['state_dict'] = {k: v.to(dtype) if v.is_floating_point() else v
                               for k, v in converted['state_dict'].items()}
    converted['meta'].update(source=osp.basename(args.src), dtype=args.dtype)
    atomic_save(converted, args.dst)
    print(f'Wrote {len(converted["state_dict"])} tensors ({args.dtype}) to {args.dst} '
          f'(verified: {len(missing)} missing, {len(unexpected)} unexpected keys)')


if __name__ == '__main__':
    main()
