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

    The config lets ``extrema.load_pretrained`` rebuild the model; the RNG states
    (restored right before the first resumed iteration, after the loop has
    advanced its data loader) make a resumed run draw the same masks, drop-path
    and augmentation as an uninterrupted one.
    """

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending_rng = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = unwrap(runner.model)
        if hasattr(model, 'config'):
            checkpoint.setdefault('meta', {})['extrema_config'] = dict(model.config)
        state = dict(torch=torch.get_rng_state(), numpy=np.random.get_state(), python=random.getstate())
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state()
        checkpoint['rng_states'] = all_gather_object(state) if get_world_size() > 1 else [state]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('rng_states')
        if states and len(states) == get_world_size():
            self._pending_rng = states[get_rank()]
        elif states:
            runner.logger.warning(f'Checkpoint has RNG states of {len(states)} ranks but the run has '
                                  f'{get_world_size()}; random streams restart from the seed.')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending_rng is None:
            return
        state, self._pending_rng = self._pending_rng, None
        torch.set_rng_state(state['torch'])
        np.random.set_state(state['numpy'])
        random.setstate(state['python'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state['cuda'])
