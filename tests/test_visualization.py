"""Visualisation and progress: TensorBoard events of a pretraining run (lr, EMA momentum, loss,
online k-NN), and progress while frozen features are embedded."""
import glob
import logging
import os
import subprocess
import sys
import textwrap
import time
import types

import pytest
import torch
from mmengine.logging import MMLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from extrema.engine.hooks import cosine_momentum
from extrema.engine.knn_hook import KNNEvalHook
from extrema.engine.launch import build_runner, setup_config
from extrema.evaluation import extract_features

from conftest import ROOT, TINY_BASE

TENSORBOARD = {'visualizer.vis_backends.0.type': 'TensorboardVisBackend'}  # the documented flag


def tiny_config(tmp_path, data_root, extra=''):
    path = tmp_path / 'tiny.py'
    path.write_text(textwrap.dedent(f"""
        _base_ = ['{TINY_BASE}']
        model = dict(arch=dict(embed_dim=32, depth=1, num_heads=2, _delete_=True), img_size=32, patch_size=8,
                     proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32, mask_ratio=0.75, num_masks=4)
        train_dataloader = dict(batch_size=50, num_workers=0, persistent_workers=False,
                                dataset=dict(data_root='{data_root}'))
        warmup_epochs = 1
        max_epochs = 2
        param_scheduler = [
            dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
            dict(type='CosineAnnealingLR', T_max=1, eta_min=0., by_epoch=True, begin=1, end=2,
                 convert_to_iter_based=True),
        ]
        train_cfg = dict(max_epochs=2)
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
        """) + textwrap.dedent(extra))
    return str(path)


KNN_HOOK = """
    labelled = dict(type='LabelledImageFolder', data_root='{root}', transform=dict(input_size=32, crop_pct=1.0))
    custom_hooks = [dict(type='MomentumUpdateHook'), dict(type='ExtreMACheckpointHook'),
                    dict(type='KNNEvalHook', k=5, interval=1,
                         bank_dataloader=dict(batch_size=100, num_workers=0,
                                              dataset=dict(labelled, data_prefix='train')),
                         val_dataloader=dict(batch_size=100, num_workers=0,
                                             dataset=dict(labelled, data_prefix='val')))]
    """


def scalars(work_dir):
    events = glob.glob(os.path.join(work_dir, '*', 'vis_data', 'events.out.tfevents.*'))
    assert len(events) == 1, events
    accumulator = EventAccumulator(events[0])
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()['scalars']}


def test_pretraining_writes_tensorboard_events_with_lr_momentum_and_knn(tmp_path, fashion_mnist_folder):
    config = tiny_config(tmp_path, fashion_mnist_folder, KNN_HOOK.format(root=fashion_mnist_folder))
    work_dir = str(tmp_path / 'work')
    runner = build_runner(setup_config(config, work_dir=work_dir, cfg_options=dict(TENSORBOARD)))
    runner.train()
    logged = scalars(work_dir)
    iters = runner.max_iters  # 2 epochs of 200 images in batches of 50
    assert iters == 8
    for tag in ('loss', 'lr', 'momentum'):
        assert [step for step, _ in logged[tag]] == list(range(1, iters + 1)), tag
    # the EMA momentum follows the cosine schedule; lr warms up over the first epoch
    momentum = [value for _, value in logged['momentum']]
    expected = [cosine_momentum(i, iters, runner.model.base_momentum) for i in range(iters)]
    assert momentum == pytest.approx(expected, abs=1e-6)
    lr = [value for _, value in logged['lr']]
    assert lr[0] < lr[3] and lr[-1] < lr[4]
    # k-NN after each epoch, on the 100 val images with the 200 train images as the bank
    knn = logged['knn/top1']
    assert [step for step, _ in knn] == [4, 8]
    assert all(0 <= value <= 100 for _, value in knn + logged['knn/top5'])
    assert all(t1 <= t5 for (_, t1), (_, t5) in zip(knn, logged['knn/top5']))


def test_runners_started_in_the_same_second_log_to_their_own_work_dirs(tmp_path, fashion_mnist_folder, monkeypatch):
    # mmengine names the logger and the visualizer after the config and the second a runner
    # starts: freeze that second, so that the two runners below would share them.
    import mmengine.runner.runner as runner_module
    frozen = types.SimpleNamespace(time=lambda: 1.8e9, localtime=time.localtime, strftime=time.strftime)
    monkeypatch.setattr(runner_module, 'time', frozen)
    config = tiny_config(tmp_path, fashion_mnist_folder)
    runners = [build_runner(setup_config(config, work_dir=str(tmp_path / name), cfg_options=dict(TENSORBOARD)))
               for name in ('first', 'second')]
    assert runners[0].timestamp == runners[1].timestamp
    assert runners[0].experiment_name != runners[1].experiment_name
    for runner, name in zip(runners, ('first', 'second')):
        own = str(tmp_path / name)
        log_files = [h.baseFilename for h in runner.logger.handlers if isinstance(h, logging.FileHandler)]
        assert log_files and all(path.startswith(own) for path in log_files)
        assert runner.visualizer._vis_backends['TensorboardVisBackend']._save_dir.startswith(own)
    assert runners[0].message_hub is not runners[1].message_hub


def test_knn_hook_checks_its_arguments_and_data_before_training(tmp_path, fashion_mnist_folder):
    with pytest.raises(ValueError, match="'teacher' or 'student'"):
        KNNEvalHook({}, {}, branch='ema')
    with pytest.raises(ValueError, match='feature must be one of'):
        KNNEvalHook({}, {}, feature='tokens')
    config = tiny_config(tmp_path, fashion_mnist_folder, KNN_HOOK.format(root=tmp_path / 'nowhere'))
    runner = build_runner(setup_config(config, work_dir=str(tmp_path / 'work')))
    with pytest.raises(FileNotFoundError):
        runner.train()
    assert runner.iter == 0


def test_local_backend_is_the_default(tmp_path, fashion_mnist_folder):
    cfg = setup_config(tiny_config(tmp_path, fashion_mnist_folder), work_dir=str(tmp_path / 'work'))
    assert [b['type'] for b in cfg.visualizer.vis_backends] == ['LocalVisBackend']
    for base in ('semi_sup/configs/_base_/default_runtime.py', 'mmseg_configs/_base_/default_runtime.py'):
        text = open(os.path.join(ROOT, base)).read()
        assert "vis_backends = [dict(type='LocalVisBackend')]" in text
        assert 'visualizer.vis_backends.0.type=TensorboardVisBackend' in text


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_feature_extraction_logs_progress():
    batches = [(torch.randn(4, 3), torch.arange(4)) for _ in range(3)]
    logger, records = MMLogger.get_current_instance(), Records()
    logger.addHandler(records)
    try:
        features, labels = extract_features(lambda x: x * 2, batches, total=12, log_interval=0.)
        assert features.shape == (12, 3) and labels.tolist() == [0, 1, 2, 3] * 3
        assert records.messages[0].startswith('embedded 4/12 images') and 'ETA' in records.messages[0]
        assert records.messages[-1].startswith('embedded 12 images in')
        records.messages.clear()
        extract_features(lambda x: x, batches, progress=False)
        assert records.messages == []
    finally:
        logger.removeHandler(records)


def test_knn_hook_gathers_every_image_across_two_processes(tmp_path, fashion_mnist_folder):
    config = tiny_config(tmp_path, fashion_mnist_folder, KNN_HOOK.format(root=fashion_mnist_folder))
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29543',
         os.path.join(ROOT, 'tools/train.py'), config, '--launcher', 'pytorch', '--work-dir', str(tmp_path / 'work'),
         '--cfg-options', 'train_cfg.max_epochs=1'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    # each rank embedded half; rank 0 voted over all of them, once
    assert log.count('k-NN (k=5, teacher instance, 200 bank / 100 val images)') == 1
