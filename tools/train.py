"""Train any toolkit config: pretraining, segmentation or semi-supervised.

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--compile] [--resume [PATH]]
                                 [--auto-scale-lr] [--cfg-options k=v ...]
    torchrun --nproc_per_node=8 tools/train.py CONFIG --launcher pytorch
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
    parser = argparse.ArgumentParser(description='Train an ExtreMA toolkit config with mmengine')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: bf16 where supported, else fp16 with dynamic loss scale')
    parser.add_argument('--amp-dtype', choices=['bfloat16', 'float16'], help='override the AMP dtype')
    parser.add_argument('--compile', action='store_true',
                        help="torch.compile the model's forward (cfg.compile); the first "
                             'iterations are slow while it compiles')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='PATH',
                        help='resume from PATH, or without PATH from the newest complete checkpoint '
                             'in the work dir')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help="scale the lr by the total batch over the config's auto_scale_lr.base_batch_size")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. model.mask_ratio=0.9')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    try:  # the config and the files it names, checked before anything is built
        cfg = setup_config(args.config, args.work_dir, args.amp, args.amp_dtype, args.resume or False,
                           args.cfg_options, args.launcher, args.compile, args.auto_scale_lr)
        check_inputs(cfg)
    except (FileNotFoundError, KeyError, ValueError) as error:
        sys.exit(f'tools/train.py: {error.args[0] if error.args else error}')
    build_runner(cfg, train=True).train()
    close_process_group()


if __name__ == '__main__':
    main()
