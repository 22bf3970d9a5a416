"""Training hooks: the EMA teacher schedule, exact resumption, and the guards that keep
training state from being lost or poisoned (``build_runner`` adds the guards to every run)."""
import math
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, all_reduce, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS
from .fileio import find_resume_checkpoint


def cosine_momentum(step: int, total_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    """m(t) = final - (final - base) * (1 + cos(pi * t / T)) / 2, per iteration."""
    return final - (final - base) * (1 + math.cos(math.pi * step / total_steps)) / 2


def plain(value):
    """ConfigDicts and tuples -> builtin dicts and lists, loadable with weights_only=True."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class MomentumUpdateHook(Hook):
    """Before every iteration: teacher <- m(t) * teacher + (1 - m(t)) * student.

    As in the official code, the update at step t uses the student produced by
    step t-1 and happens before step t's teacher forward.
    """

    priority = 'HIGH'

    def __init__(self, final_momentum: float = 1.0):
        self.final_momentum = final_momentum

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = unwrap(runner.model)
        momentum = cosine_momentum(runner.iter, runner.max_iters, model.base_momentum, self.final_momentum)
        model.momentum_update(momentum)
        runner.message_hub.update_scalar('train/momentum', momentum)


@HOOKS.register_module()
class ExtreMACheckpointHook(Hook):
    """Stores the model config and every rank's RNG state in each checkpoint.

    The config lets ``extrema.load_pretrained`` rebuild the model. The RNG states,
    restored before the first resumed epoch creates its data iterator, make a run
    resumed at an epoch boundary draw the same masks, drop-path and colour
    augmentation as an uninterrupted one; the crops made in the workers come from
    per-item seeds (``TrainDataHook``), so persistent workers resume exactly too.
    """

    priority = 'LOW'  # before CheckpointHook (VERY_LOW) in after_train_epoch

    def __init__(self):
        self._pending_rng = None
        self._epoch_rng = None

    @staticmethod
    def _rng_state() -> dict:
        state = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate())
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state()
        return state

    def after_train_epoch(self, runner) -> None:
        # Checkpoints are written by rank 0 only, so every rank's state is gathered here.
        states = all_gather_object(self._rng_state()) if get_world_size() > 1 else [self._rng_state()]
        self._epoch_rng = (runner.iter, states)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = unwrap(runner.model)
        if hasattr(model, 'config'):
            checkpoint.setdefault('meta', {})['extrema_config'] = plain(model.config)
        if self._epoch_rng is not None and self._epoch_rng[0] == runner.iter:
            checkpoint['rng_states'] = self._epoch_rng[1]
        elif get_world_size() == 1:
            checkpoint['rng_states'] = [self._rng_state()]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('rng_states')
        if states and len(states) == get_world_size():
            self._pending_rng = states[get_rank()]
        elif states:
            runner.logger.warning(f'Checkpoint has RNG states of {len(states)} ranks but the run has '
                                  f'{get_world_size()}; random streams restart from the seed.')

    def before_train_epoch(self, runner) -> None:
        if self._pending_rng is None:
            return
        state, self._pending_rng = self._pending_rng, None
        torch.set_rng_state(state['torch'])
        np.random.set_state(state['numpy'])
        random.setstate(state['python'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state['cuda'])


def _named_tensors(checkpoint: dict):
    """(name, tensor) of the weights and of the optimizer state of a checkpoint dict."""
    for name, value in checkpoint.get('state_dict', {}).items():
        if torch.is_tensor(value):
            yield name, value
    optimizer = checkpoint.get('optimizer', {})
    for index, state in optimizer.get('state', {}).items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.is_floating_point():
                yield f'optimizer.state.{index}.{key}', value


def _model_state(runner) -> dict:
    return unwrap(runner.model).state_dict()


def _strip_module(key: str) -> str:
    return key[len('module.'):] if key.startswith('module.') else key


# Scheduler attributes that record progress; every other one (begin, end, T_max, eta_min, ...)
# describes the schedule and comes from the config of the resumed run.
SCHEDULE_PROGRESS = ('base_values', 'last_step', '_global_step', '_last_value')


@HOOKS.register_module()
class CheckpointGuardHook(Hook):
    """No poisoned checkpoint on disk, no silent surprise on resume.

    * before every save: the weights and the optimizer state must be finite; otherwise
      the save is refused (so the previous checkpoint stays the newest) and the error
      names the tensors and that checkpoint;
    * on ``--resume``: the checkpoint's model must have the config's architecture (one
      error naming the differing tensors, instead of mmengine's per-key warnings and a
      crash in the optimizer); the config's learning rate and other optimizer settings,
      and its schedule (``begin``, ``end``, ``T_max``, ...) replace the stored ones and
      the change is logged. A new base lr rescales the stored lr, so the schedule
      continues from where it was, at the new scale.
    """

    priority = 'VERY_HIGH'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        tensors = list(_named_tensors(checkpoint))
        bad = [name for name, value in tensors if not bool(torch.isfinite(value).all())]
        if not bad:
            return
        meta = checkpoint.get('meta', {})
        previous = find_resume_checkpoint(runner.work_dir)
        keep = (f'The newest checkpoint on disk, {previous}, was written before and is kept: resume '
                'from it with --resume and a lower learning rate (--cfg-options '
                'optim_wrapper.optimizer.lr=...), or without --amp.' if previous else
                f'No earlier checkpoint exists in {runner.work_dir}: restart with a lower learning rate.')
        raise FloatingPointError(
            f'Not saving the checkpoint of epoch {meta.get("epoch", runner.epoch)}, iteration '
            f'{meta.get("iter", runner.iter)}: {len(bad)} of {len(tensors)} weight and optimizer '
            f'tensors hold NaN or Inf (first: {", ".join(bad[:4])}). The weights diverged after the '
            f'last finite loss. {keep}')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not runner._resume:  # load_from: mmengine's non-strict load, reported by its loader
            return
        self._check_architecture(runner, checkpoint)
        if 'optimizer' in checkpoint and getattr(runner, 'optim_wrapper', None) is not None:
            self._apply_optimizer_config(runner, checkpoint)
        if checkpoint.get('param_schedulers') and runner.param_schedulers:
            self._apply_schedule_config(runner, checkpoint)

    @staticmethod
    def _check_architecture(runner, checkpoint: dict) -> None:
        stored = {_strip_module(k): v for k, v in checkpoint.get('state_dict', {}).items()}
        model = _model_state(runner)
        shapes = [f'{k}: {tuple(stored[k].shape)} in the checkpoint, {tuple(v.shape)} in the model'
                  for k, v in model.items() if k in stored and stored[k].shape != v.shape]
        missing = [k for k in model if k not in stored]
        unexpected = [k for k in stored if k not in model]
        if not (shapes or missing or unexpected):
            return
        details = shapes[:3]
        if missing:
            details.append(f'{len(missing)} model keys missing (e.g. {missing[0]})')
        if unexpected:
            details.append(f'{len(unexpected)} unexpected keys (e.g. {unexpected[0]})')
        stored_cfg = checkpoint.get('meta', {}).get('extrema_config')
        trained = f' It was trained with {stored_cfg}.' if stored_cfg else ''
        raise ValueError(
            f'Cannot resume from {runner._load_from or runner.work_dir}: its model is not the one this config '
            f'builds ({len(shapes)} of {len(model)} tensors differ in shape; {"; ".join(details)}).{trained} '
            'Resume with the config the run was started with (architecture overrides such as model.arch or '
            'model.patch_size cannot change mid-run), or start a new work dir; to initialise a different '
            'model from these weights use load_from / model.pretrained instead of --resume.')

    @staticmethod
    def _apply_optimizer_config(runner, checkpoint: dict) -> None:
        stored = checkpoint['optimizer']
        optimizer = getattr(runner.optim_wrapper, 'optimizer', None)
        if optimizer is None or 'param_groups' not in stored:
            return
        if len(stored['param_groups']) != len(optimizer.param_groups):
            raise ValueError(
                f'Cannot resume: the checkpoint has {len(stored["param_groups"])} optimizer parameter groups, '
                f'the config builds {len(optimizer.param_groups)} (a different optimizer constructor, '
                'paramwise_cfg or layer decay). Resume with the config the run was started with.')
        changes = []
        for index, (old, new) in enumerate(zip(stored['param_groups'], optimizer.param_groups)):
            old_base = old.get('initial_lr', old['lr'])
            new_base = new.get('initial_lr', new['lr'])
            if old_base != new_base:
                scale = new_base / old_base if old_base else 0.
                changes.append(f'group {index}: base lr {old_base:.4g} -> {new_base:.4g} (current lr '
                               f'{old["lr"]:.4g} -> {old["lr"] * scale:.4g})')
                old['lr'] *= scale
                old['initial_lr'] = new_base
                for state in checkpoint.get('param_schedulers') or []:
                    if state.get('param_name') == 'lr' and len(state.get('base_values', [])) > index:
                        state['base_values'][index] = new_base
                        state['_last_value'][index] *= scale
            for key, value in new.items():
                if key not in ('params', 'lr', 'initial_lr') and key in old and old[key] != value:
                    changes.append(f'group {index}: {key} {old[key]} -> {value}')
                    old[key] = value
        if changes:
            runner.logger.info('Resume: the config\'s optimizer settings replace the checkpoint\'s: '
                               + '; '.join(changes))

    @staticmethod
    def _apply_schedule_config(runner, checkpoint: dict) -> None:
        schedulers = runner.param_schedulers
        if isinstance(schedulers, dict):
            return  # several optimizers: mmengine restores each as stored
        stored = checkpoint['param_schedulers']
        if len(stored) != len(schedulers):
            raise ValueError(f'Cannot resume: the checkpoint has {len(stored)} parameter schedulers, the config '
                             f'builds {len(schedulers)}. Resume with the config the run was started with.')
        changes = []
        for index, (state, scheduler) in enumerate(zip(stored, schedulers)):
            for key, value in scheduler.state_dict().items():
                if key not in SCHEDULE_PROGRESS and key in state and state[key] != value:
                    changes.append(f'param_scheduler[{index}].{key} {state[key]} -> {value}')
                    state[key] = value
        if changes:
            runner.logger.info('Resume: the config\'s schedule replaces the checkpoint\'s (in iterations '
                               'where converted): ' + '; '.join(changes))


@HOOKS.register_module()
class TrainDataHook(Hook):
    """Keeps the training data deterministic and its bad files counted across the run.

    * the DataLoader draws its workers' base seed from its own generator, not from the
      global stream, so a fresh iterator (a resumed run, or persistent workers starting
      late) does not shift the masks and drop-path drawn in the main process;
    * a dataset with ``set_epoch(epoch, seed)`` (``SeededItems``) gets the epoch before
      each epoch's iterator starts;
    * a dataset with ``bad_files`` (``SkipUnreadable``) has its flags merged over all
      ranks at the end of every epoch and checked against its ``max_bad_fraction``.
    """

    priority = 'NORMAL'

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        if loader.generator is None:
            loader.generator = torch.Generator().manual_seed(runner.seed)
        dataset = loader.dataset
        if hasattr(dataset, 'bad_files'):
            dataset.bad_files  # noqa: B018  (shared flags made before the workers start)
        if runner._resume and getattr(loader, 'persistent_workers', False) and not hasattr(dataset, 'set_epoch'):
            runner.logger.warning(
                f'{type(dataset).__name__} draws its augmentation from the workers\' own streams, which '
                'persistent workers carry across epochs: this resumed run is not bit-exact. For an '
                'exact resume use train_dataloader.persistent_workers=False.')

    def before_train_epoch(self, runner) -> None:
        dataset = runner.train_dataloader.dataset
        if hasattr(dataset, 'set_epoch'):
            dataset.set_epoch(runner.epoch, runner.seed)

    def after_train_epoch(self, runner) -> None:
        dataset = runner.train_dataloader.dataset
        if not hasattr(dataset, 'bad_files'):
            return
        flags = dataset.bad_files
        if get_world_size() > 1:
            merged = flags.to(torch.uint8)
            all_reduce(merged, op='max')
            flags.copy_(merged.bool())
        bad = dataset.check_bad_fraction()
        if bad:
            runner.logger.warning(f'{bad} of {len(flags)} image files of {type(dataset).__name__} are '
                                  'unreadable and skipped (counted over all ranks and workers).')
