"""Training hooks: the EMA teacher schedule and exact resumption."""
import math
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS


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
    resumed at an epoch boundary draw the same masks, drop-path, augmentation and
    worker seeds as an uninterrupted one (persistent workers keep their own
    streams, so exactness needs ``persistent_workers=False``).
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
