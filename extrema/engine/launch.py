"""From a config file and the command-line flags to a ready mmengine Runner.

``tools/train.py`` and the tests use exactly this path.
"""
import copy
import glob
import os.path as osp
import re
import time
import warnings
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported for tools)
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner


def cpu_bf16_speedup(repeats: int = 2) -> float:
    """fp32 time / bf16-autocast time of a small transformer block's forward and backward.

    CPU flags are not enough: the project's test machine, which reports AVX512-BF16,
    ran a bf16 ViT step ~40x slower than fp32 by the issue's measurement and 1.3-1.4x
    faster on another day. Measuring takes well under a second.
    """
    from ..models.vit import Block
    torch.manual_seed(0)
    block = Block(768, 12)  # ViT-B width: small widths hide the slow bf16 GEMM path
    x = torch.randn(1, 64, 768, requires_grad=True)

    def step():
        block(x).sum().backward()

    times = {torch.float32: [], torch.bfloat16: []}
    for _ in range(repeats + 1):
        for dtype in times:
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                start = time.perf_counter()
                step()
                times[dtype].append(time.perf_counter() - start)
    fp32, bf16 = (sorted(t[1:])[len(t[1:]) // 2] for t in times.values())
    return fp32 / bf16


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The newest complete checkpoint in ``work_dir``.

    Reads mmengine's ``last_checkpoint`` pointer and falls back to scanning
    ``epoch_*.pth`` / ``iter_*.pth`` when the pointer is missing or stale.
    Checkpoints are written atomically, so every file found is complete.
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            path = f.read().strip()
        if path and osp.isfile(path):
            return path
    candidates = []
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        match = re.fullmatch(r'(epoch|iter)_(\d+)\.pth', osp.basename(path))
        if match:
            candidates.append((int(match.group(2)), path))
    return max(candidates)[1] if candidates else None


def replace_sync_bn(node):
    """SyncBN -> BN everywhere in a config (CPU runs: gloo has no SyncBN)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'type' and value == 'SyncBN':
                node[key] = 'BN'
            else:
                replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            replace_sync_bn(item)


def setup_config(config: str, work_dir: Optional[str] = None, amp: bool = False,
                 amp_dtype: Optional[str] = None, resume: bool = False, cfg_options: Optional[dict] = None,
                 launcher: str = 'none', compile: bool = False) -> Config:
    """The config file with the command line applied. ``compile`` sets ``cfg.compile``,
    which ``build_runner`` turns into a compiled model forward."""
    if not osp.isfile(config):
        raise FileNotFoundError(f'Config {config!r} does not exist.')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(config))[0])
    checkpoint_hook = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint_hook is not None and not checkpoint_hook.get('backend_args'):
        checkpoint_hook['backend_args'] = dict(backend='atomic_local')
    if amp:
        _enable_amp(cfg, amp_dtype)
    use_fused_adam(cfg)
    if compile:
        cfg.compile = True
    if not torch.cuda.is_available():
        replace_sync_bn(cfg._cfg_dict)
        if launcher != 'none':
            cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
            cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if resume:
        checkpoint = find_resume_checkpoint(cfg.work_dir)
        if checkpoint is None:
            warnings.warn(f'--resume: no checkpoint in {cfg.work_dir}; starting from scratch.')
        else:
            cfg.resume = True
            cfg.load_from = checkpoint
    return cfg


def use_fused_adam(cfg: Config) -> None:
    """Adam/AdamW without an explicit implementation -> torch's fused kernel (CPU and CUDA):
    one pass over each parameter instead of one per arithmetic op."""
    optimizer = cfg.get('optim_wrapper', {}).get('optimizer')
    if optimizer and optimizer.get('type') in ('Adam', 'AdamW') and not {'fused', 'foreach'} & set(optimizer):
        optimizer['fused'] = True


def _enable_amp(cfg: Config, amp_dtype: Optional[str]) -> None:
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') in ('AmpOptimWrapper', 'extrema.AutocastOptimWrapper'):
        return
    if torch.cuda.is_available():
        dtype = amp_dtype or ('bfloat16' if torch.cuda.is_bf16_supported() else 'float16')
        wrapper.update(type='AmpOptimWrapper', dtype=dtype)
        if dtype == 'float16':
            wrapper.loss_scale = 'dynamic'
        else:
            wrapper.pop('loss_scale', None)
        return
    if amp_dtype == 'float16':
        raise ValueError('--amp-dtype float16 needs a GPU (fp16 needs a dynamic loss scale, which '
                         "mmengine's AmpOptimWrapper gives only there); on a CPU use bf16 (the default).")
    speedup = cpu_bf16_speedup()
    if speedup < 1.0:
        warnings.warn(f'--amp ignored: bf16 autocast runs at {speedup:.2f}x the speed of fp32 on this CPU '
                      '(no fast native bf16). Training in fp32.')
        return
    # mmengine's AmpOptimWrapper is GPU-only; CPU autocast has no fp16 path worth using.
    wrapper.update(type='extrema.AutocastOptimWrapper', dtype='bfloat16')


def close_process_group() -> None:
    """Wait for every rank, then tear the process group down. A rank that exits while
    another still talks to it (rank 0 writing the last checkpoint) can abort in gloo's
    threads ("terminate called without an active exception") after a finished run."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def build_runner(cfg: Config) -> Runner:
    """``Runner.from_cfg``, except that ``cfg.compile`` (True or ``torch.compile`` kwargs)
    compiles the model's forward, not mmengine's whole ``train_step``: traced through the
    optimizer wrapper, the step failed in Dynamo under ``AmpOptimWrapper`` on CUDA
    (torch 2.11, an internal error in mmengine's ``autocast`` context). Autocast, backward
    and the optimizer stay eager; the checkpoint keys do not change."""
    if cfg.launcher != 'none' and not torch.cuda.is_available() and not dist.is_initialized():
        # mmengine's launcher calls torch.cuda.set_device; on CPU start gloo here.
        dist.init_process_group('gloo')
    runner_cfg = copy.deepcopy(cfg)
    compile_cfg = runner_cfg.pop('compile', False)
    runner = Runner.from_cfg(runner_cfg)
    if compile_cfg:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model.compile(**({} if compile_cfg is True else compile_cfg))
    return runner
