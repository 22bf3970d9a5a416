"""Segmentation of your own ADE-layout folder at another image size, with one override."""
import os
import os.path as osp
import textwrap

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS as MMSEG_DATASETS
from PIL import Image

from extrema.engine.launch import build_runner, setup_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CONFIG = osp.join(ROOT, 'mmseg_configs', 'upernet_extrema-tiny-p4_1xb8-500it_fashion-ade-48x48.py')
CLASSES = ('road', 'car', 'tree')


def make_ade_folder(root, rng, counts=(('training', 4), ('validation', 2))):
    """Scenes of coloured rectangles: label 0 = unlabelled, 1..3 = CLASSES."""
    colours = np.array([[90, 90, 90], [200, 30, 30], [30, 160, 40]])
    for split, count in counts:
        os.makedirs(osp.join(root, 'images', split))
        os.makedirs(osp.join(root, 'annotations', split))
        for index in range(count):
            label = np.ones((72, 96), np.uint8)
            for value in (2, 3):
                top, left = rng.integers(0, 40), rng.integers(0, 60)
                label[top:top + 30, left:left + 30] = value
            label[:2] = 0  # an unlabelled border row
            image = colours[np.maximum(label, 1) - 1] + rng.integers(0, 20, (72, 96, 3))
            Image.fromarray(image.astype(np.uint8)).save(osp.join(root, 'images', split, f'{index}.jpg'))
            Image.fromarray(label).save(osp.join(root, 'annotations', split, f'{index}.png'))


def own_config(tmp_path, root):
    """What the README's "Your own dataset" section tells a user to write."""
    path = tmp_path / 'my_seg.py'
    path.write_text(textwrap.dedent(f"""
        _base_ = ['{TINY_CONFIG}']
        classes = {CLASSES!r}
        dataset = dict(data_root='{root}', metainfo=dict(classes=classes))
        train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dataset)
        val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dataset)
        test_dataloader = val_dataloader
        model = dict(decode_head=dict(num_classes=len(classes)), auxiliary_head=dict(num_classes=len(classes)))
        train_cfg = dict(max_iters=2, val_interval=2)
        param_scheduler = []
        default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
        """))
    return str(path)


def test_own_ade_folder_at_another_size_with_one_override(tmp_path):
    root = str(tmp_path / 'my_data')
    make_ade_folder(root, np.random.default_rng(0))
    cfg = setup_config(own_config(tmp_path, root), str(tmp_path / 'work'), cfg_options={'crop_size': (64, 64)})
    # the one knob reached everything sized from the 48-px crop
    assert cfg.model.backbone.img_size == (64, 64)
    assert cfg.model.data_preprocessor.size == (64, 64) and cfg.data_preprocessor.size == (64, 64)
    train_pipeline = cfg.train_dataloader.dataset.pipeline
    assert [t for t in train_pipeline if t.type == 'RandomCrop'][0].crop_size == (64, 64)
    assert [t for t in train_pipeline if t.type == 'RandomResize'][0].scale == (256, 85)  # (192, 64) x 4/3
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert [t for t in loader.dataset.pipeline if t.type == 'Resize'][0].scale == (256, 85)
    runner = build_runner(cfg)
    runner.train()
    dataset = runner.train_dataloader.dataset
    assert dataset.metainfo['classes'] == CLASSES and len(dataset.metainfo['palette']) == 3
    batch = runner.model.data_preprocessor(next(iter(runner.train_dataloader)), True)
    assert batch['inputs'].shape[-2:] == (64, 64)
    assert runner.model.backbone.pos_embed.shape[1] == (64 // 4) ** 2
    label = batch['data_samples'][0].gt_sem_seg.data
    assert set(label.unique().tolist()) <= {0, 1, 2, 255}  # reduce_zero_label: 1..3 -> 0..2, 0 -> ignored
    assert 0. <= runner.message_hub.get_info('best_score') <= 100.  # mIoU on the 2 validation scenes


def test_crop_size_must_be_a_size(tmp_path):
    with pytest.raises(ValueError, match=r"crop_size must be an int or \(height, width\)"):
        setup_config(TINY_CONFIG, str(tmp_path / 'work'), cfg_options={'crop_size': 'big'})


def test_label_files_keep_their_values_when_reclassed(tmp_path):
    root = str(tmp_path / 'my_data')
    make_ade_folder(root, np.random.default_rng(1), counts=(('training', 1),))
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = MMSEG_DATASETS.build(dict(
            type='FashionADEDataset', data_root=root, metainfo=dict(classes=CLASSES),
            data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
            pipeline=[dict(type='LoadAnnotations')]))
    label = dataset[0]['gt_seg_map']
    source = np.asarray(Image.open(osp.join(root, 'annotations/training/0.png')))
    assert (label == np.where(source == 0, 255, source.astype(np.int64) - 1)).all()
