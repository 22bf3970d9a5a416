"""From a config file and the command-line flags to a ready mmengine Runner.

``tools/train.py`` and the tests use exactly this path.
"""
import copy
import difflib
import inspect
import itertools
import os
import os.path as osp
import warnings
from typing import Iterator, List, Optional, Tuple, Union

import torch
import torch.distributed as dist
from mmengine import registry as mmengine_registry
from mmengine.config import Config, ConfigDict
from mmengine.config import DictAction as MMEngineDictAction
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from ..benchmark.timing import cpu_bf16_speedup
from .crop_size import apply_crop_size
from .fileio import find_resume_checkpoint, is_complete_checkpoint, remove_stale_temporaries
from .hooks import CheckpointGuardHook, TrainDataHook

__all__ = ['Config', 'DictAction', 'build_runner', 'check_inputs', 'close_process_group',
           'find_resume_checkpoint', 'setup_config']


class DictAction(MMEngineDictAction):
    """mmengine's ``--cfg-options`` parser, with a message for an item without ``=``
    (mmengine fails on it with "not enough values to unpack")."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values:
            if '=' not in item:
                parser.error(f'{option_string} takes KEY=VALUE pairs; {item!r} has no "=" '
                             f'(e.g. {item}=VALUE).')
        super().__call__(parser, namespace, values, option_string)


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
                 amp_dtype: Optional[str] = None, resume: Union[bool, str] = False,
                 cfg_options: Optional[dict] = None, launcher: str = 'none', compile: bool = False,
                 auto_scale_lr: bool = False) -> Config:
    """The config file with the command line applied and checked.

    ``resume``: True (or 'auto') resumes from the newest complete checkpoint of the work
    dir, a path from that checkpoint. ``compile`` sets ``cfg.compile``, which
    ``build_runner`` turns into a compiled model forward. Every check here reads the
    config only (no data, no compute); ``check_inputs`` looks at the files it names.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'Config {config!r} does not exist.')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg_options = check_option_keys(cfg, cfg_options)
        cfg_options = apply_crop_size(cfg, cfg_options)
        loop_length = _loop_length(cfg)
        cfg.merge_from_dict(cfg_options)
        derive_schedule(cfg, loop_length, cfg_options)
    check_img_size(cfg)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(config))[0])
    checkpoint_hook = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint_hook is not None and not checkpoint_hook.get('backend_args'):
        checkpoint_hook['backend_args'] = dict(backend='atomic_local')
    if amp:
        _enable_amp(cfg, amp_dtype)
    if auto_scale_lr:
        if not cfg.get('auto_scale_lr', {}).get('base_batch_size'):
            raise ValueError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N) in the config: the '
                             'total batch its learning rate was set for.')
        cfg.auto_scale_lr.enable = True
    use_fused_adam(cfg)
    if compile:
        cfg.compile = True
    if not torch.cuda.is_available():
        replace_sync_bn(cfg._cfg_dict)
        if launcher != 'none':
            cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
            cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
        fit_cpu(cfg, cfg_options or {})
    if resume:
        _set_resume(cfg, resume)
    return cfg


def _set_resume(cfg: Config, resume: Union[bool, str]) -> None:
    if resume is True or resume == 'auto':
        checkpoint = find_resume_checkpoint(cfg.work_dir)
        if checkpoint is None:
            warnings.warn(f'--resume: no complete checkpoint in {cfg.work_dir}; starting from scratch.')
            return
    else:
        checkpoint = resume
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'--resume {checkpoint}: no such file.')
        if not is_complete_checkpoint(checkpoint):
            newest = find_resume_checkpoint(osp.dirname(checkpoint) or '.')
            raise ValueError(f'--resume {checkpoint}: the file is incomplete (truncated, or not a torch '
                             'checkpoint).' + (f' The newest complete one beside it is {newest}.' if newest else ''))
    cfg.resume = True
    cfg.load_from = checkpoint


# ------------------------------------------------------------------ --cfg-options checks

# Top-level names the Runner (or this toolkit) reads, beyond those in the config file.
RUNNER_KEYS = set(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg'} | {
    'compile', 'runner_type', 'strategy', 'model_wrapper_cfg', 'work_dir'}
# Config variables that only feed other keys when the file is parsed; an override of one
# would change nothing, so it is applied to the key it feeds.
LOOP_VARIABLES = ('max_epochs', 'max_iters')
SCOPED_REGISTRIES = ('MODELS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
                     'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'LOOPS', 'HOOKS', 'VISUALIZERS',
                     'VISBACKENDS', 'METRICS', 'EVALUATOR', 'LOG_PROCESSORS', 'WEIGHT_INITIALIZERS',
                     'MODEL_WRAPPERS', 'RUNNERS')


def _flat_keys(node, prefix: str = '') -> Iterator[str]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        yield f'{prefix}{key}'
        yield from _flat_keys(value, f'{prefix}{key}.')


def _resolve_type(type_name, scope: Optional[str]):
    """The class a config ``type`` names, searched in mmengine's registries; None if unknown."""
    if not isinstance(type_name, str):
        return type_name if inspect.isclass(type_name) else None
    for name in SCOPED_REGISTRIES:
        registry = getattr(mmengine_registry, name)
        try:
            with registry.switch_scope_and_registry(scope) as scoped:
                found = scoped.get(type_name)
        except Exception:  # noqa: BLE001  (a scope that cannot be imported: no verdict)
            found = None
        if found is not None:
            return found
    return None


def _accepts(cls, name: str) -> bool:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind == p.VAR_KEYWORD or p.name == name for p in parameters)


def check_option_keys(cfg: Config, options: dict) -> dict:
    """Refuses a ``--cfg-options`` key that matches nothing, naming the nearest key.

    A new key is accepted where it can mean something: a Runner argument at the top
    level, or an argument of the class that the enclosing dict's ``type`` names.
    Returns the options, with a config variable such as ``max_epochs`` applied to the
    key it feeds (``train_cfg.max_epochs``).
    """
    options = dict(options)
    root = cfg._cfg_dict
    known = list(_flat_keys(root)) + sorted(RUNNER_KEYS)
    for key in list(options):
        if key in LOOP_VARIABLES and key in cfg.get('train_cfg', {}) and f'train_cfg.{key}' not in options:
            print_log(f'--cfg-options {key}={options[key]}: {key} is a variable of the config file, read when '
                      f'it was parsed; applying it as train_cfg.{key}.', logger='current')
            options[f'train_cfg.{key}'] = options.pop(key)
            continue
        parts = key.split('.')
        node, reason = root, None
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif last and isinstance(node, dict):
                if node is root:
                    reason = None if part in RUNNER_KEYS else 'is not a key of the config nor a Runner argument'
                else:
                    cls = _resolve_type(node.get('type'), cfg.get('default_scope'))
                    if cls is not None and not _accepts(cls, part):
                        reason = f'is not an argument of {cls.__name__}'
                break
            else:
                reason = f'does not exist ({".".join(parts[:depth + 1])} is not in the config)'
                break
        if reason:
            nearest = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            hint = f' Did you mean {nearest[0]!r}?' if nearest else ''
            raise KeyError(f'--cfg-options {key}: {key!r} {reason}, so the override would change nothing.{hint}')
    return options


# ------------------------------------------------------------------ schedule and loop length

def _loop_length(cfg: Config) -> Tuple[Optional[str], Optional[int]]:
    loop = cfg.get('train_cfg') or {}
    for key in LOOP_VARIABLES:
        if key in loop:
            return key, loop[key]
    return None, None


def derive_schedule(cfg: Config, before: Tuple[Optional[str], Optional[int]], options: dict) -> None:
    """After the loop length changed (``train_cfg.max_epochs=N``), move the ends of the
    schedulers that ended with the loop: ``end``, and a cosine's ``T_max`` when it spanned
    begin..end. A scheduler that begins after the new end (the cosine after a warm-up
    longer than the run) is never reached and stays as it is. When the options also set
    ``param_scheduler``, the schedule must end with the loop: a mismatch is refused."""
    key, old = before
    new = _loop_length(cfg)[1]
    schedulers = cfg.get('param_scheduler')
    if key is None or old == new or not schedulers:
        return
    schedulers = [schedulers] if isinstance(schedulers, dict) else schedulers
    by_epoch = key == 'max_epochs'
    same_unit = [(i, s) for i, s in enumerate(schedulers) if s.get('by_epoch', True) == by_epoch]
    if any(k.startswith('param_scheduler') for k in options):
        ends = [s['end'] for _, s in same_unit if 'end' in s]
        if ends and max(ends) != new:
            raise ValueError(
                f'train_cfg.{key}={new} but the param_scheduler set with --cfg-options ends at {max(ends)}: the '
                f'learning rate would not follow the run. Make the last scheduler end at {new} (and its T_max '
                'span it), or leave param_scheduler out and it follows the loop.')
        return
    moved = []
    for index, scheduler in same_unit:
        begin = scheduler.get('begin', 0)
        if scheduler.get('end') != old or begin >= new:
            continue
        if scheduler.get('T_max') == old - begin:
            scheduler['T_max'] = new - begin
        scheduler['end'] = new
        moved.append(f'param_scheduler[{index}] ({scheduler.get("type")}) ends at {new}')
    if moved:
        print_log(f'train_cfg.{key} {old} -> {new}: ' + ', '.join(moved) + ' (was ' + str(old) + ').',
                  logger='current')


# ------------------------------------------------------------------ consistency and inputs

def check_img_size(cfg: Config) -> None:
    """The pretraining crops must have the model's size (masks and position table assume it)."""
    model_size = cfg.get('model', {}).get('img_size')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        size = dataset.get('img_size') if isinstance(dataset, dict) else None
        if model_size is not None and size is not None and size != model_size:
            raise ValueError(
                f'{loader}.dataset.img_size={size} but model.img_size={model_size}: the model would mask and '
                f'embed a {model_size}-px grid and see {size}-px crops. Set both to the same size '
                f'(--cfg-options model.img_size={size} or {loader}.dataset.img_size={model_size}).')


DATA_LAYOUTS = {
    'ADE20KDataset': (
        'ADE20K (SceneParse150)',
        'download ADEChallengeData2016.zip (http://data.csail.mit.edu/places/ADEchallenge/'
        'ADEChallengeData2016.zip) and unzip it into data/ade/, which gives '
        'data/ade/ADEChallengeData2016/images/{training,validation}/*.jpg and '
        'data/ade/ADEChallengeData2016/annotations/{training,validation}/*.png (see docs/segmentation.md).'),
    'FashionADEDataset': ('the Fashion-ADE scenes', 'make them with python tools/prepare_fashion_ade.py --out DIR.'),
    'RandomCropImageFolder': (
        'an ImageNet-layout image folder',
        'the layout is <data_root>/<data_prefix>/<class>/<image>, e.g. data/imagenet/train/n01440764/*.JPEG; '
        'tools/prepare_fashion_mnist.py makes such folders from the embedded Fashion-MNIST data.'),
    'LabelledImageFolder': (
        'ImageNet-layout image folders',
        'the layout is <data_root>/train/<class>/<image> and <data_root>/val/<class>/<image> (or a flat '
        'val/ with ann_file), e.g. data/imagenet (docs/semi_supervised.md); tools/prepare_fashion_mnist.py '
        'makes such folders from the embedded Fashion-MNIST data.'),
}


def _datasets(node) -> Iterator[dict]:
    """A dataset config and the ones it wraps (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(node, dict):
        return
    inner = [node['dataset']] if isinstance(node.get('dataset'), dict) else list(node.get('datasets') or [])
    if inner:
        for item in inner:
            yield from _datasets(item)
    else:
        yield node


def _missing_paths(dataset: dict) -> List[str]:
    root = dataset.get('data_root') or ''
    prefix = dataset.get('data_prefix')
    paths = list(prefix.values()) if isinstance(prefix, dict) else [prefix] if prefix else []
    paths = [osp.join(root, p) for p in paths if isinstance(p, str)] or ([root] if root else [])
    if dataset.get('ann_file'):
        paths.append(osp.join(root, dataset['ann_file']))
    return [p for p in paths if not osp.exists(p)]


def _local_path(value) -> bool:
    return isinstance(value, str) and bool(value) and '://' not in value


def check_inputs(cfg: Config, loaders=('train_dataloader', 'val_dataloader', 'test_dataloader')) -> None:
    """Every data folder the run's loaders read and every checkpoint it loads must exist,
    checked before the Runner is built: one error lists what is missing, the layout
    expected there and the flag that points elsewhere."""
    problems, layouts, seen = [], {}, set()
    for loader in loaders:
        for dataset in _datasets((cfg.get(loader) or {}).get('dataset')):
            missing = [p for p in _missing_paths(dataset) if p not in seen]
            if not missing:
                continue
            seen.update(missing)
            name, layout = DATA_LAYOUTS.get(dataset.get('type'), ('data', ''))
            layouts[dataset.get('type')] = f'{dataset.get("type")}: {layout}'
            problems.append(
                f'{loader} reads {name} from data_root={dataset.get("data_root")!r}: '
                f'{", ".join(repr(p) for p in missing)} {"does" if len(missing) == 1 else "do"} not exist '
                f'(to read it elsewhere: --cfg-options {loader}.dataset.data_root=DIR).')
    problems += [layout for layout in layouts.values() if not layout.endswith(': ')]
    model = cfg.get('model') or {}
    weights = [('model.pretrained', model.get('pretrained')),
               ('model.backbone.init_cfg.checkpoint',
                ((model.get('backbone') or {}).get('init_cfg') or {}).get('checkpoint'))]
    if not cfg.get('resume'):
        weights.append(('load_from', cfg.get('load_from')))
    for key, path in weights:
        if _local_path(path) and not osp.isfile(path):
            problems.append(f'{key}={path!r} does not exist. Pass a checkpoint with --cfg-options {key}=PATH '
                            f'(ours, an official ExtreMA release or a converted backbone file), or {key}=None '
                            'to start from random initialisation.')
    if problems:
        raise FileNotFoundError('Missing inputs, nothing was run:\n  - ' + '\n  - '.join(problems))


def fit_cpu(cfg: Config, options: dict) -> None:
    """On a CPU, torch's threads and the DataLoader workers share the cores: more of them
    than cores made the tiny config's step several times slower (the threads of a GEMM
    wait on each other while the workers hold cores). Unless set by the user
    (``OMP_NUM_THREADS``, ``--cfg-options *.num_workers``), half of this process's cores
    go to the training loader's workers and the rest to torch (``cfg.cpu_threads``,
    applied by ``build_runner``); evaluation loaders, which run while training waits,
    get at most those cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    cores = max(1, cores // int(os.environ.get('LOCAL_WORLD_SIZE', 1)))
    chosen = {}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader_cfg = cfg.get(loader)
        if not loader_cfg or f'{loader}.num_workers' in options:
            continue
        asked = loader_cfg.get('num_workers', 0)
        limit = cores // 2 if loader == 'train_dataloader' else cores
        workers = min(asked, limit)
        if workers != asked:
            loader_cfg.num_workers = workers
            if workers == 0:
                loader_cfg.persistent_workers = False
                loader_cfg.pop('prefetch_factor', None)
            chosen[loader] = (asked, workers)
    train_workers = (cfg.get('train_dataloader') or {}).get('num_workers', 0)
    user_threads = os.environ.get('OMP_NUM_THREADS')
    threads = int(user_threads) if user_threads else max(1, cores - train_workers)
    cfg.cpu_threads = threads
    changed = ''.join(f', {loader}.num_workers {asked} -> {workers}' for loader, (asked, workers) in chosen.items())
    print_log(f'CPU run on {cores} cores: torch threads {threads}'
              f'{" (OMP_NUM_THREADS)" if user_threads else ""}, training DataLoader workers {train_workers}'
              f'{changed}. Set others with OMP_NUM_THREADS=N and --cfg-options train_dataloader.num_workers=N.',
              logger='current')


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


# How many runners this process has built (see build_runner).
_runner_count = itertools.count(1)


def build_runner(cfg: Config, train: bool = False) -> Runner:
    """The Runner of ``cfg``: ``Runner.from_cfg``, or the registered runner a config's
    ``runner_type`` names (``FlexibleRunner`` for FSDP / DeepSpeed strategies), with the
    guards of every run (``CheckpointGuardHook``, ``TrainDataHook``) added.

    ``cfg.compile`` (True or ``torch.compile`` kwargs) compiles the model's forward, not
    mmengine's whole ``train_step``: traced through the optimizer wrapper, the step failed
    in Dynamo under ``AmpOptimWrapper`` on CUDA (torch 2.11, an internal error in
    mmengine's ``autocast`` context). Autocast, backward and the optimizer stay eager; the
    checkpoint keys do not change. ``train=True`` (tools/train.py) also builds the train
    loop, so that a batch larger than the dataset is refused before any compute.

    mmengine names a runner's logger, message hub, visualizer and scope after the config file
    and the second the runner starts, and hands a runner whose name is taken the instances of
    the earlier one: its log file, its ``vis_data`` folder and its runtime info. So the second
    and later runners of a process get the suffix ``-N`` on their experiment name."""
    if cfg.launcher != 'none' and not torch.cuda.is_available() and not dist.is_initialized():
        # mmengine's launcher calls torch.cuda.set_device; on CPU start gloo here.
        dist.init_process_group('gloo')
    runner_cfg = copy.deepcopy(cfg)
    count = next(_runner_count)
    if count > 1:
        name = runner_cfg.get('experiment_name') or (
            osp.splitext(osp.basename(cfg.filename))[0] if cfg.filename else 'run')
        runner_cfg.experiment_name = f'{name}-{count}'
    threads = runner_cfg.pop('cpu_threads', None)
    if threads:
        torch.set_num_threads(threads)
    flexible = runner_cfg.get('runner_type', 'Runner') != 'Runner'
    compile_cfg = False if flexible else runner_cfg.pop('compile', False)  # FlexibleRunner compiles itself
    if 'runner_type' in runner_cfg:
        runner = mmengine_registry.RUNNERS.build(runner_cfg)
    else:
        runner = Runner.from_cfg(runner_cfg)
    for guard in (CheckpointGuardHook, TrainDataHook):
        if not any(isinstance(hook, guard) for hook in runner.hooks):
            runner.register_hook(guard())
    if get_rank() == 0:
        for path in remove_stale_temporaries(runner.work_dir):
            runner.logger.info(f'Removed {path}, left by a checkpoint write that was killed.')
    if compile_cfg:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model.compile(**({} if compile_cfg is True else compile_cfg))
    if train:
        check_batch_fits(runner)
    return runner


def check_batch_fits(runner) -> None:
    """A training batch must fit in each rank's share of the dataset (mmengine fails later
    with "epoch_length must be a positive integer", or loops forever)."""
    loader = runner.train_loop.dataloader
    if len(loader) == 0:
        world = runner.world_size
        raise ValueError(
            f'train_dataloader.batch_size={loader.batch_size} is larger than the {len(loader.dataset)} images of '
            f'the training set' + (f' ({len(loader.sampler)} per rank over {world} ranks)' if world > 1 else '')
            + ' with drop_last=True, so an epoch has no batch. Lower the batch size (--cfg-options '
            'train_dataloader.batch_size=N) or use more data.')
