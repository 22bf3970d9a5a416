"""Evaluate a segmentation checkpoint: mIoU, mAcc and aAcc.

    python tools/test.py CONFIG CHECKPOINT [--tta] [--show-dir DIR] [--out DIR] [--cfg-options k=v ...]
    torchrun --nproc_per_node=8 tools/test.py CONFIG CHECKPOINT --launcher pytorch
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import extrema  # noqa: E402,F401  (shims and registration before any config is read)
from extrema.engine.launch import (DictAction, build_runner, check_inputs, close_process_group,  # noqa: E402
                                   setup_config)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a segmentation checkpoint with mmengine')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (a full segmentor, e.g. iter_160000.pth)')
    parser.add_argument('--work-dir', help='where logs and metrics go')
    parser.add_argument('--out', help='also save the predicted label maps (PNG) to this folder')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='save prediction overlays to this folder')
    parser.add_argument('--show-interval', type=int, default=1, help='show or save every N-th image')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds between shown images')
    parser.add_argument('--tta', action='store_true', help='multi-scale + flip test-time augmentation')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. test_dataloader.dataset.data_root=DIR')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def setup_test_config(args):
    """The training config, turned into a test run of ``args.checkpoint``."""
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'Checkpoint {args.checkpoint!r} does not exist.')
    cfg = setup_config(args.config, args.work_dir, cfg_options=args.cfg_options, launcher=args.launcher)
    cfg.load_from = args.checkpoint  # read by extrema.checkpoint.load_file (weights only)
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(
        type='extrema.CompleteCheckpointHook', checkpoint=args.checkpoint,
        fix='tools/test.py evaluates a trained segmentor: pass the iter_N.pth that tools/train.py wrote for '
            'this config (pretrained encoders go into training with --cfg-options model.pretrained=PATH).')]
    if args.show or args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise KeyError('--show/--show-dir need default_hooks.visualization=dict(type='
                           "'SegVisualizationHook') in the config.")
        hook.draw = True
        hook.interval = args.show_interval
        if args.show:
            hook.show = True
            hook.wait_time = args.wait_time
        if args.show_dir:
            cfg.visualizer.save_dir = args.show_dir
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise KeyError('--tta needs tta_model and tta_pipeline in the config.')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out:
        cfg.test_evaluator.output_dir = args.out
        cfg.test_evaluator.keep_results = True
    return cfg


def main(argv=None):
    args = parse_args(argv)
    try:  # the checkpoint and the test data, checked before anything is built
        cfg = setup_test_config(args)
        check_inputs(cfg, loaders=('test_dataloader',))
    except (FileNotFoundError, KeyError) as error:
        sys.exit(f'tools/test.py: {error.args[0] if error.args else error}')
    metrics = build_runner(cfg).test()
    close_process_group()
    return metrics


if __name__ == '__main__':
    main()
