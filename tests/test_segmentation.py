"""Segmentation transfer end to end: Fashion-ADE data, the Runner path of tools/train.py, tools/test.py."""
import glob
import importlib.util
import os
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS as MMSEG_DATASETS
from PIL import Image

from extrema.data.fashion_ade import SEG_CLASSES, FashionADEDataset, generate_fashion_ade
from extrema.engine.launch import build_runner, setup_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CONFIG = osp.join(ROOT, 'mmseg_configs', 'upernet_extrema-tiny-p4_1xb8-500it_fashion-ade-48x48.py')


@pytest.fixture(scope='module')
def fashion_ade(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('fashion_ade'))
    generate_fashion_ade(root, train_images=8, val_images=3, min_side=48, max_side=56)
    return root


def tiny_options(data_root, **overrides):
    """Tiny config on ``data_root``: 2 iterations of batch 2, single-process loaders."""
    options = {'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2, 'train_dataloader.batch_size': 2,
               'default_hooks.checkpoint.interval': 2, 'default_hooks.logger.interval': 1}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options.update({f'{loader}.dataset.data_root': data_root, f'{loader}.num_workers': 0,
                        f'{loader}.persistent_workers': False})
    options.update(overrides)
    return options


def test_generated_scenes_follow_the_ade_layout(fashion_ade):
    images = sorted(glob.glob(osp.join(fashion_ade, 'images', 'training', '*.jpg')))
    labels = sorted(glob.glob(osp.join(fashion_ade, 'annotations', 'training', '*.png')))
    assert len(images) == len(labels) == 8
    assert len(glob.glob(osp.join(fashion_ade, 'annotations', 'validation', '*.png'))) == 3
    values = set()
    for image_path, label_path in zip(images, labels):
        image, label = np.asarray(Image.open(image_path)), np.asarray(Image.open(label_path))
        assert image.shape == (*label.shape, 3) and 48 <= min(label.shape) <= max(label.shape) <= 56
        values |= set(np.unique(label).tolist())
        assert (label == 1).mean() > 0.2  # background is a class; items cover part of the scene
    assert values <= set(range(12)) and {0, 1} <= values and len(values & set(range(2, 12))) >= 3


def test_dataset_reduces_zero_label_to_ignore(fashion_ade):
    cfg = setup_config(TINY_CONFIG, cfg_options=tiny_options(fashion_ade))
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = MMSEG_DATASETS.build(cfg.val_dataloader.dataset)
    assert isinstance(dataset, FashionADEDataset) and len(dataset) == 3
    assert dataset.metainfo['classes'] == SEG_CLASSES and len(SEG_CLASSES) == 11
    sample = dataset[0]['data_samples']
    raw = np.asarray(Image.open(sample.seg_map_path)).astype(np.int64)
    gt = sample.gt_sem_seg.data[0].numpy()
    assert gt.shape == raw.shape  # the test pipeline resizes the image, not the label
    np.testing.assert_array_equal(gt, np.where(raw == 0, 255, raw - 1))


def test_missing_data_root_says_how_to_generate_it(tmp_path):
    cfg = setup_config(TINY_CONFIG, cfg_options=tiny_options(str(tmp_path / 'nowhere')))
    with DefaultScope.overwrite_default_scope('mmseg'), \
            pytest.raises(FileNotFoundError, match='tools/prepare_fashion_ade.py --out .*nowhere'):
        MMSEG_DATASETS.build(cfg.train_dataloader.dataset)


@pytest.fixture(scope='module')
def trained(fashion_ade, tmp_path_factory):
    """Work dir of a 2-iteration run of the tiny config, through tools/train.py's path."""
    work_dir = str(tmp_path_factory.mktemp('trained') / 'work')
    cfg = setup_config(TINY_CONFIG, work_dir, cfg_options=tiny_options(fashion_ade))
    assert cfg.model.decode_head.norm_cfg.type == 'BN'  # SyncBN in the config, BN on CPU
    runner = build_runner(cfg)
    runner.train()
    return dict(work_dir=work_dir, iter=runner.iter, best_score=runner.message_hub.get_info('best_score'))


def test_train_evaluate_save_and_resume(fashion_ade, trained, tmp_path):
    assert trained['iter'] == 2
    assert osp.isfile(osp.join(trained['work_dir'], 'iter_2.pth'))
    assert osp.isfile(osp.join(trained['work_dir'], 'best_mIoU_iter_2.pth'))  # mIoU computed at iter 2
    assert 0. <= trained['best_score'] <= 100.

    work_dir = str(tmp_path / 'resumed')
    shutil.copytree(trained['work_dir'], work_dir)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, 'iter_2.pth'))
    cfg = setup_config(TINY_CONFIG, work_dir, resume=True,
                       cfg_options=tiny_options(fashion_ade, **{'train_cfg.max_iters': 3}))
    assert cfg.load_from == osp.join(work_dir, 'iter_2.pth')
    runner = build_runner(cfg)
    runner.train()
    assert runner.iter == 3 and osp.isfile(osp.join(work_dir, 'iter_3.pth'))
    log = open(glob.glob(osp.join(work_dir, runner.timestamp, '*.log'))[0]).read()
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'Iter(train) [3/3]' in log and 'Iter(train) [1/3]' not in log


def _load_test_tool():
    spec = importlib.util.spec_from_file_location('seg_test_tool', osp.join(ROOT, 'tools', 'test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tools_test_reports_miou_with_tta_and_overlays(fashion_ade, trained, tmp_path):
    checkpoint = osp.join(trained['work_dir'], 'iter_2.pth')
    tool = _load_test_tool()
    show_dir = str(tmp_path / 'overlays')
    argv = [TINY_CONFIG, checkpoint, '--work-dir', str(tmp_path / 'test'), '--tta', '--show-dir', show_dir,
            '--cfg-options'] + [f'{k}={v}' for k, v in tiny_options(fashion_ade).items()]
    cfg = tool.setup_test_config(tool.parse_args(argv))
    assert cfg.model.type == 'SegTTAModel' and cfg.load_from == checkpoint
    metrics = build_runner(cfg).test()
    assert {'aAcc', 'mIoU', 'mAcc'} <= set(metrics)
    assert all(0. <= metrics[k] <= 100. for k in ('aAcc', 'mIoU', 'mAcc'))
    overlays = glob.glob(osp.join(show_dir, '**', '*.png'), recursive=True)
    assert len(overlays) == 3

    with pytest.raises(FileNotFoundError, match='iter_9.pth'):
        tool.setup_test_config(tool.parse_args([TINY_CONFIG, osp.join(trained['work_dir'], 'iter_9.pth')]))


def test_mismatched_num_classes_stops_before_training(fashion_ade, tmp_path):
    options = tiny_options(fashion_ade, **{'model.decode_head.num_classes': 12})
    runner = build_runner(setup_config(TINY_CONFIG, str(tmp_path / 'work'), cfg_options=options))
    with pytest.raises(ValueError, match=r'UPerHead.num_classes=12 but the train dataset '
                                         r'FashionADEDataset has 11 classes'):
        runner.train()
    assert runner.iter == 0


def test_out_of_range_label_file_is_named(fashion_ade, tmp_path):
    bad_root = str(tmp_path / 'bad')
    shutil.copytree(fashion_ade, bad_root)
    for path in glob.glob(osp.join(bad_root, 'annotations', 'training', '*.png')):
        label = np.asarray(Image.open(path)).copy()
        label[:] = 200
        Image.fromarray(label).save(path)
    runner = build_runner(setup_config(TINY_CONFIG, str(tmp_path / 'work'),
                                       cfg_options=tiny_options(bad_root)))
    with pytest.raises(ValueError, match=r'Label file .*fashion_ade_training_\d+\.png has values \[199\] '
                                         r'outside the 11 classes'):
        runner.train()
    assert runner.iter == 0
    assert not torch.isnan(next(runner.model.parameters())).any()
    assert os.listdir(str(tmp_path / 'work'))  # the run started (logs) and stopped at the first batch


def test_frozen_trunk_config_trains_the_neck_and_heads_only(fashion_ade, tmp_path):
    config = osp.join(ROOT, 'mmseg_configs', 'upernet_extrema-tiny-p4_1xb8-frozen-500it_fashion-ade-48x48.py')
    zoo = osp.join(ROOT, 'pretrain', 'zoo', 'extrema_vit-tiny-p4_mask08x5_fashion-mnist-60k-32px',
                   'teacher_backbone.pth')
    runner = build_runner(setup_config(config, str(tmp_path), cfg_options=tiny_options(
        fashion_ade, **{'model.pretrained': zoo, 'default_hooks.checkpoint.interval': 100})))
    runner.model.init_weights()
    before = {name: p.detach().clone() for name, p in runner.model.named_parameters()}
    runner.train()
    after = dict(runner.model.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert not {name for name in changed if name.startswith('backbone.')}
    assert any(name.startswith('decode_head.') for name in changed)
    assert any(name.startswith('neck.') for name in changed)
    from extrema.checkpoint import encoder_state_dict, load_file  # the frozen trunk is the loaded one
    stored = encoder_state_dict(load_file(zoo))['blocks.0.attn.qkv.weight']
    assert torch.equal(after['backbone.blocks.0.attn.qkv.weight'].detach(), stored.float())
