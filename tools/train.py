"""Train any toolkit config: pretraining, segmentation or semi-supervised.

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--compile] [--resume] [--cfg-options k=v ...]
    torchrun --nproc_per_node=8 tools/train.py CONFIG --launcher pytorch
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import extrema  # noqa: E402,F401  (shims and registration before any config is read)
from extrema.engine.launch import DictAction, build_runner, close_process_group, setup_config  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Train an ExtreMA toolkit config with mmengine')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: bf16 where supported, else fp16 with dynamic loss scale')
    parser.add_argument('--amp-dtype', choices=['bfloat16', 'float16'], help='override the AMP dtype')
    parser.add_argument('--compile', action='store_true',
                        help="torch.compile the model's forward (cfg.compile); the first "
                             'iterations are slow while it compiles')
    parser.add_argument('--resume', action='store_true',
                        help='resume from the newest checkpoint in the work dir')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. model.mask_ratio=0.9')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    cfg = setup_config(args.config, args.work_dir, args.amp, args.amp_dtype, args.resume,
                       args.cfg_options, args.launcher, args.compile)
    build_runner(cfg).train()
    close_process_group()


if __name__ == '__main__':
    main()
