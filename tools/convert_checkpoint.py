"""Convert ExtreMA checkpoints.

    # official release -> our format (loads with extrema.load_pretrained and --resume-free training)
    python tools/convert_checkpoint.py extrema_mask08x5_color_1k_300ep.pth extrema_b.pth --to extrema
    # ours or official -> one encoder, for segmentation and semi-supervised transfer
    python tools/convert_checkpoint.py work_dirs/run/epoch_300.pth vit-b_teacher.pth --to backbone --branch teacher

The output holds tensors and a plain ``meta`` dict only, so it loads with
``torch.load(weights_only=True)``. Every conversion is verified by loading the
result into the matching model and printing its missing and unexpected keys.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from extrema import ExtreMA  # noqa: E402
from extrema.checkpoint import (atomic_save, encoder_state_dict, extrema_config,  # noqa: E402
                                infer_encoder_config, load_file, report_load, to_extrema_state_dict)
from extrema.models.vit import ExtreMAEncoder  # noqa: E402


def convert_to_extrema(checkpoint: dict, strict: bool) -> dict:
    state = to_extrema_state_dict(checkpoint)
    config = extrema_config(checkpoint, state)
    missing, unexpected = report_load(ExtreMA(**config), state, strict=strict, name='ExtreMA')
    return dict(state_dict=state, meta=dict(extrema_config=config)), missing, unexpected


def convert_to_backbone(checkpoint: dict, branch: str, keep_projector: bool, strict: bool) -> dict:
    encoder = encoder_state_dict(checkpoint, branch)
    if not keep_projector:
        encoder = {k: v for k, v in encoder.items() if not k.startswith('head.')}
    config = infer_encoder_config(encoder)
    expected = ExtreMAEncoder(**config)
    if not keep_projector:
        del expected.head
    missing, unexpected = report_load(expected, encoder, strict=strict, name=f'{branch} encoder')
    meta = dict(format='extrema-backbone', branch=branch, encoder_config=config)
    return dict(state_dict=encoder, meta=meta), missing, unexpected


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='official ExtreMA checkpoint or one of ours')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--to', choices=['extrema', 'backbone'], required=True)
    parser.add_argument('--branch', choices=['student', 'teacher'], default='student',
                        help='encoder to export with --to backbone (default: student, as the official fine-tuning)')
    parser.add_argument('--keep-projector', action='store_true', help='keep the projector (head.*) in a backbone file')
    parser.add_argument('--strict', action='store_true', help='fail on any missing or unexpected key')
    args = parser.parse_args(argv)
    checkpoint = load_file(args.src)
    if args.to == 'extrema':
        converted, missing, unexpected = convert_to_extrema(checkpoint, args.strict)
    else:
        converted, missing, unexpected = convert_to_backbone(checkpoint, args.branch, args.keep_projector,
                                                             args.strict)
    converted['meta']['source'] = osp.basename(args.src)
    atomic_save(converted, args.dst)
    print(f'Wrote {len(converted["state_dict"])} tensors to {args.dst} '
          f'(verified: {len(missing)} missing, {len(unexpected)} unexpected keys)')


if __name__ == '__main__':
    main()
