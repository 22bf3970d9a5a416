"""The model zoo entries: each file is the one its sha256 names, every loader takes it, and its
frozen features beat a random initialisation on a small labelled subset of Fashion-MNIST."""
import hashlib
import os

import pytest
import torch

from conftest import ROOT

import extrema
from extrema.evaluation import frozen_eval
from extrema.models import ExtreMAViT

ZOO = os.path.join(ROOT, 'pretrain', 'zoo')
ENTRIES = ['extrema_vit-tiny-p4_mask08x5_fashion-mnist-60k-32px',  # InfoNCE
           'extrema_vit-tiny-p4_mask08x1_byol_fashion-mnist-60k-32px']  # BYOL, the paper's loss


def weights(entry):
    return os.path.join(ZOO, entry, 'teacher_backbone.pth')


def test_every_entry_is_tested():
    assert sorted(ENTRIES) == sorted(os.listdir(ZOO))


@pytest.mark.parametrize('entry', ENTRIES)
def test_weights_match_their_sha256_and_fit_the_repository(entry):
    with open(os.path.join(ZOO, entry, 'sha256.txt')) as f:
        expected, name = f.read().split()
    assert name == os.path.basename(weights(entry))
    with open(weights(entry), 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest() == expected
    assert os.path.getsize(weights(entry)) <= 10 * 2 ** 20


@pytest.mark.parametrize('entry', ENTRIES)
def test_segmentation_backbone_loads_every_trunk_tensor(entry):
    backbone = ExtreMAViT(arch=dict(embed_dim=192, depth=6, num_heads=3), img_size=32, patch_size=4,
                          drop_path_rate=0., out_indices=(5,),
                          init_cfg=dict(type='Pretrained', checkpoint=weights(entry)))
    before = backbone.state_dict()['blocks.0.attn.qkv.weight'].clone()
    backbone.init_weights()
    state = torch.load(weights(entry), map_location='cpu', weights_only=True)
    state = state.get('state_dict', state)
    stored = state['blocks.0.attn.qkv.weight'].float()
    loaded = backbone.state_dict()['blocks.0.attn.qkv.weight']
    assert not torch.equal(before, loaded)
    torch.testing.assert_close(loaded, stored)


def frozen_top1(entry, data_root, *extra):
    report = frozen_eval.main(['--checkpoint', weights(entry), '--data-root', data_root, '--percent', '50',
                               '--protocol', 'knn', 'logreg', '--lambd', '0.001', '--cache-dir', '',
                               '--workers', '0', '--device', 'cpu', '--out', os.devnull, *extra])
    return {protocol: result['top1'] for protocol, result in report['results'].items()}


@pytest.fixture(scope='module')
def labelled_folder(tmp_path_factory):
    """10 labelled images per class (50% of 20) and 60 test images per class."""
    from extrema.data.fashion_mnist import export_image_folder
    root = tmp_path_factory.mktemp('zoo_fashion_mnist')
    export_image_folder(str(root), size=32, train_per_class=20, val_per_class=60, seed=1)
    return str(root)


@pytest.mark.parametrize('entry', ENTRIES)
def test_zoo_features_beat_random_init(entry, labelled_folder):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    pretrained = frozen_top1(entry, labelled_folder)
    random = frozen_top1(entry, labelled_folder, '--random-init')
    # 600 test images: one image is 0.17 points
    assert pretrained['knn'] >= random['knn'] + 5, (pretrained, random)
    assert pretrained['logreg'] >= random['logreg'] + 2, (pretrained, random)
