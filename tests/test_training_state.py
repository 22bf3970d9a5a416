"""No lost or poisoned training state: non-finite saves, resume overrides and mismatches,
incomplete checkpoints, leftovers of killed writes, the runner a config names."""
import logging
import math
import os
import shutil

import pytest
import torch
from mmengine.hooks import Hook

from extrema.checkpoint import load_file
from extrema.engine.fileio import find_resume_checkpoint, is_complete_checkpoint
from extrema.engine.launch import build_runner, setup_config

from test_pretrain import write_config


@pytest.fixture(scope='module')
def trained(tmp_path_factory, fashion_mnist_folder):
    """Work dir of a 2-epoch run of the tiny config (epoch_1.pth, epoch_2.pth)."""
    tmp_path = tmp_path_factory.mktemp('trained')
    config = write_config(tmp_path, fashion_mnist_folder, epochs=2)
    work_dir = str(tmp_path / 'work')
    build_runner(setup_config(config, work_dir=work_dir)).train()
    return dict(config=config, work_dir=work_dir, data=fashion_mnist_folder, tmp=tmp_path)


def copy_work_dir(trained, tmp_path):
    work_dir = str(tmp_path / 'work')
    shutil.copytree(trained['work_dir'], work_dir)
    with open(os.path.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(os.path.join(work_dir, 'epoch_2.pth'))
    return work_dir


class PoisonLastIteration(Hook):
    """A loss spike on the last iteration of epoch 2: the step leaves Inf weights
    although its loss was finite."""

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.epoch == 1 and batch_idx == len(runner.train_dataloader) - 1:
            with torch.no_grad():
                runner.model.student.patch_embed.proj.weight.mul_(float('inf'))


def test_non_finite_weights_are_never_saved(tmp_path, fashion_mnist_folder):
    config = write_config(tmp_path, fashion_mnist_folder, epochs=2)
    runner = build_runner(setup_config(config, work_dir=str(tmp_path / 'work')))
    runner.register_hook(PoisonLastIteration())
    with pytest.raises(FloatingPointError, match=r'Not saving the checkpoint of epoch 2.*NaN or Inf') as error:
        runner.train()
    assert 'student.patch_embed.proj.weight' in str(error.value)
    assert str(tmp_path / 'work/epoch_1.pth') in str(error.value)  # the message names the kept file
    assert sorted(f for f in os.listdir(tmp_path / 'work') if f.endswith('.pth')) == ['epoch_1.pth']
    kept = load_file(str(tmp_path / 'work/epoch_1.pth'))['state_dict']
    assert all(torch.isfinite(v).all() for v in kept.values() if v.is_floating_point())
    assert find_resume_checkpoint(str(tmp_path / 'work')).endswith('epoch_1.pth')


def test_truncated_newest_checkpoint_falls_back_to_the_previous(trained, tmp_path):
    work_dir = copy_work_dir(trained, tmp_path)
    newest = os.path.join(work_dir, 'epoch_2.pth')
    with open(newest, 'r+b') as f:
        f.truncate(os.path.getsize(newest) // 2)
    assert not is_complete_checkpoint(newest)
    assert is_complete_checkpoint(os.path.join(work_dir, 'epoch_1.pth'))
    cfg = setup_config(trained['config'], work_dir=work_dir, resume=True)
    assert cfg.load_from == os.path.join(work_dir, 'epoch_1.pth')
    runner = build_runner(cfg)
    runner.train()  # resumes at epoch 1 and trains epoch 2 again
    assert runner.epoch == 2 and is_complete_checkpoint(newest)
    with pytest.raises(ValueError, match='incomplete'):
        shutil.copy(newest, str(tmp_path / 'cut.pth'))
        with open(tmp_path / 'cut.pth', 'r+b') as f:
            f.truncate(1000)
        setup_config(trained['config'], work_dir=work_dir, resume=str(tmp_path / 'cut.pth'))


def test_resume_from_a_given_path(trained, tmp_path):
    work_dir = copy_work_dir(trained, tmp_path)
    first = os.path.join(work_dir, 'epoch_1.pth')
    cfg = setup_config(trained['config'], work_dir=work_dir, resume=first)
    assert cfg.resume is True and cfg.load_from == first
    with pytest.raises(FileNotFoundError, match='no such file'):
        setup_config(trained['config'], work_dir=work_dir, resume=os.path.join(work_dir, 'epoch_9.pth'))


def test_stale_temporary_files_are_removed(trained, tmp_path):
    work_dir = copy_work_dir(trained, tmp_path)
    dead = os.path.join(work_dir, 'epoch_3.pth.tmp-999999999')  # no such process
    alive = os.path.join(work_dir, f'epoch_3.pth.tmp-{os.getpid()}')  # a write in progress
    for path in (dead, alive):
        open(path, 'wb').write(b'partial')
    build_runner(setup_config(trained['config'], work_dir=work_dir))
    assert not os.path.exists(dead) and os.path.exists(alive)


class RecordLr(Hook):
    def __init__(self):
        self.lrs = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs.append([g['lr'] for g in runner.optim_wrapper.optimizer.param_groups])


def test_resume_applies_a_new_learning_rate_and_schedule(trained, tmp_path):
    """Stored lr 5e-4; resumed with lr 1e-3 and one more epoch: the schedule continues
    at twice the scale and ends at the new last epoch."""
    work_dir = copy_work_dir(trained, tmp_path)
    stored = load_file(os.path.join(work_dir, 'epoch_2.pth'))
    stored_lr = [g['lr'] for g in stored['optimizer']['param_groups']]
    cfg = setup_config(trained['config'], work_dir=work_dir, resume=True,
                       cfg_options={'optim_wrapper.optimizer.lr': 1e-3, 'train_cfg.max_epochs': 3})
    runner = build_runner(cfg)
    record = RecordLr()
    runner.register_hook(record)
    runner.train()
    assert runner.epoch == 3
    groups = runner.optim_wrapper.optimizer.param_groups
    assert [g['initial_lr'] for g in groups] == [1e-3, 1e-3]
    # The stored lr, scaled by 1e-3 / 5e-4, then mmengine's recursive cosine with the new
    # T_max (16 iterations from iteration 8): from the current value to 0 at iteration 24.
    assert record.lrs[0] == pytest.approx([2 * lr for lr in stored_lr], rel=1e-6)
    ratio = (1 + math.cos(math.pi * 8 / 16)) / (1 + math.cos(math.pi * 7 / 16))  # cosine step 7 -> 8
    assert record.lrs[1] == pytest.approx([lr * ratio for lr in record.lrs[0]], rel=1e-6)
    assert len(record.lrs) == 8 and record.lrs[-1][0] < record.lrs[0][0] / 10
    # The file the runner's logger writes.
    log_file, = [h.baseFilename for h in runner.logger.handlers if isinstance(h, logging.FileHandler)]
    log = open(log_file).read()
    assert 'base lr 0.0005 -> 0.001' in log
    assert 'param_scheduler[1].end 16 -> 24' in log


def test_resume_into_another_architecture_is_one_clear_error(trained, tmp_path):
    work_dir = copy_work_dir(trained, tmp_path)
    cfg = setup_config(trained['config'], work_dir=work_dir, resume=True,
                       cfg_options={'model.arch.embed_dim': 32})
    runner = build_runner(cfg)
    with pytest.raises(ValueError, match=r'its model is not the one this config builds') as error:
        runner.train()
    message = str(error.value)
    assert 'in the checkpoint' in message and "'embed_dim': 64" in message
    assert message.count('\n') == 0


def test_runner_type_is_honoured(tmp_path, fashion_mnist_folder):
    from mmengine.runner import FlexibleRunner
    config = write_config(tmp_path, fashion_mnist_folder, extra="runner_type = 'FlexibleRunner'\n")
    cfg = setup_config(config, work_dir=str(tmp_path / 'flex'), cfg_options={'train_cfg.max_epochs': 1})
    runner = build_runner(cfg)
    assert isinstance(runner, FlexibleRunner)
    runner.train()
    assert os.path.isfile(tmp_path / 'flex/epoch_1.pth')
