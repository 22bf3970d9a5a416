"""Configs do what the user asked, and every check runs before any compute."""
import importlib.util
import os
import subprocess
import sys

import pytest

from extrema.engine import launch
from extrema.engine.launch import build_runner, check_inputs, setup_config

from conftest import ROOT, TINY_BASE
from test_pretrain import write_config

IMAGENET = os.path.join(ROOT, 'pretrain/configs/extrema_vit-b-p16_mask08x5_8xb256-amp-300e_in1k.py')
SEMI_SUP = os.path.join(ROOT, 'semi_sup/configs/finetune_extrema-vit-b-p16_8xb32-800e_in1k-1pct.py')
UPERNET = os.path.join(ROOT, 'mmseg_configs/upernet_extrema_b.py')


def load_train_tool():
    spec = importlib.util.spec_from_file_location('train_tool', os.path.join(ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_max_epochs_moves_the_end_of_the_schedule():
    cfg = setup_config(TINY_BASE, cfg_options={'train_cfg.max_epochs': 4})
    cosine = cfg.param_scheduler[1]
    assert (cosine.begin, cosine.end, cosine.T_max) == (1, 4, 3)  # was 1, 8, 7
    assert cfg.param_scheduler[0].end == 1  # the warm-up keeps its length
    alias = setup_config(TINY_BASE, cfg_options={'max_epochs': 4})  # the config variable
    assert alias.train_cfg.max_epochs == 4 and alias.param_scheduler[1].end == 4
    iters = setup_config(os.path.join(ROOT, 'mmseg_configs/upernet_extrema-tiny-p4_1xb8-500it_fashion-ade-48x48.py'),
                         cfg_options={'train_cfg.max_iters': 300})
    assert iters.param_scheduler[1].end == 300
    short = setup_config(TINY_BASE, cfg_options={'train_cfg.max_epochs': 1})  # ends inside the warm-up
    assert (short.param_scheduler[1].begin, short.param_scheduler[1].end) == (1, 8)  # never reached


def test_a_schedule_set_by_hand_must_end_with_the_loop():
    with pytest.raises(ValueError, match=r'train_cfg.max_epochs=4 but .* ends at 6'):
        setup_config(TINY_BASE, cfg_options={'train_cfg.max_epochs': 4, 'param_scheduler.1.end': 6})
    cfg = setup_config(TINY_BASE, cfg_options={'train_cfg.max_epochs': 4, 'param_scheduler.1.end': 4,
                                               'param_scheduler.1.T_max': 3})
    assert cfg.param_scheduler[1].end == 4


@pytest.mark.parametrize('key, nearest', [('max_epoch', 'max_epochs'), ('train_cfg.max_epoch', 'train_cfg.max_epochs'),
                                          ('model.mask_ratios', 'model.mask_ratio'),
                                          ('modle.mask_ratio', 'model.mask_ratio')])
def test_an_option_that_matches_nothing_names_the_nearest_key(key, nearest):
    with pytest.raises(KeyError, match=f"Did you mean '{nearest}'"):
        setup_config(TINY_BASE, cfg_options={key: 1})


def test_new_keys_that_mean_something_are_accepted():
    cfg = setup_config(TINY_BASE, cfg_options={'train_dataloader.dataset.max_samples': 10,  # a dataset argument
                                               'load_from': None,  # a Runner argument
                                               'train_dataloader.prefetch_factor': 4})  # untyped dict
    assert cfg.train_dataloader.dataset.max_samples == 10


def test_an_option_without_equals_gets_a_message(capsys):
    tool = load_train_tool()
    with pytest.raises(SystemExit):
        tool.parse_args([TINY_BASE, '--cfg-options', 'model.mask_ratio'])
    assert "'model.mask_ratio' has no \"=\"" in capsys.readouterr().err
    assert tool.parse_args([TINY_BASE, '--resume']).resume == 'auto'
    assert tool.parse_args([TINY_BASE, '--resume', 'w/epoch_3.pth']).resume == 'w/epoch_3.pth'
    assert tool.parse_args([TINY_BASE, '--auto-scale-lr']).auto_scale_lr


def test_auto_scale_lr_flag():
    assert setup_config(TINY_BASE).auto_scale_lr.enable is False
    assert setup_config(TINY_BASE, auto_scale_lr=True).auto_scale_lr.enable is True


def test_dataset_img_size_must_match_the_model():
    with pytest.raises(ValueError, match=r'train_dataloader.dataset.img_size=40 but model.img_size=32'):
        setup_config(TINY_BASE, cfg_options={'train_dataloader.dataset.img_size': 40})


def test_a_batch_larger_than_the_dataset_is_refused(tmp_path, fashion_mnist_folder):
    cfg = setup_config(write_config(tmp_path, fashion_mnist_folder), work_dir=str(tmp_path / 'work'),
                       cfg_options={'train_dataloader.batch_size': 256})
    with pytest.raises(ValueError, match=r'batch_size=256 is larger than the 200 images'):
        build_runner(cfg, train=True)


@pytest.mark.parametrize('config, expected', [
    (UPERNET, ['ADEChallengeData2016/images/training', 'ADEChallengeData2016.zip',
               'annotations/{training,validation}', 'train_dataloader.dataset.data_root=DIR',
               'val_dataloader.dataset.data_root=DIR', 'model.pretrained=']),
    (IMAGENET, ['data/imagenet/train', 'n01440764', 'train_dataloader.dataset.data_root=DIR']),
    (SEMI_SUP, ['data/imagenet/train', 'data/imagenet/val', '<data_root>/val/<class>/<image>',
                'model.pretrained=']),
])
def test_missing_data_and_weights_are_named_before_the_runner(config, expected):
    with pytest.raises(FileNotFoundError) as error:
        check_inputs(setup_config(config))
    for text in expected:
        assert text in str(error.value), text


def test_the_first_segmentation_command_ends_in_a_message_not_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools/train.py'), UPERNET,
                             '--work-dir', str(tmp_path / 'work')],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    assert 'ADEChallengeData2016.zip' in result.stderr and 'Missing inputs' in result.stderr
    assert not (tmp_path / 'work').exists()  # nothing was built


def test_tools_test_names_missing_test_data_before_building(tmp_path):
    checkpoint = tmp_path / 'iter_160000.pth'
    checkpoint.write_bytes(b'')  # never read: the data check comes first
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools/test.py'), UPERNET, str(checkpoint),
                             '--work-dir', str(tmp_path / 'work')],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    assert 'test_dataloader' in result.stderr and 'ADEChallengeData2016.zip' in result.stderr
    assert not (tmp_path / 'work').exists()


def test_cpu_threads_and_workers_fit_the_cores(monkeypatch):
    monkeypatch.setattr(launch.torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(launch.os, 'sched_getaffinity', lambda pid: {0, 1})
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    cfg = setup_config(TINY_BASE)  # asks for 2 workers
    assert (cfg.train_dataloader.num_workers, cfg.cpu_threads) == (1, 1)
    cfg = setup_config(TINY_BASE, cfg_options={'train_dataloader.num_workers': 2})  # the user's choice stays
    assert (cfg.train_dataloader.num_workers, cfg.cpu_threads) == (2, 1)
    monkeypatch.setattr(launch.os, 'sched_getaffinity', lambda pid: {0})
    cfg = setup_config(TINY_BASE)
    assert (cfg.train_dataloader.num_workers, cfg.train_dataloader.persistent_workers, cfg.cpu_threads) == (0, False, 1)
    monkeypatch.setattr(launch.os, 'sched_getaffinity', lambda pid: set(range(16)))
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    cfg = setup_config(IMAGENET)  # 12 workers asked
    assert (cfg.train_dataloader.num_workers, cfg.cpu_threads) == (8, 3)
