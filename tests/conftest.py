"""Shared fixtures: tiny models and tiny real data (Fashion-MNIST from Debian)."""
import os

import pytest
import torch

import extrema  # noqa: F401  (shims and registration)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny CPU pretraining config, the base of the tests' few-second runs.
TINY_BASE = os.path.join(ROOT, 'pretrain/configs/extrema_vit-tiny-p4_mask08x5_1xb128-cpu-8e_fashion-mnist-32px.py')
TINY_ARCH = dict(embed_dim=64, depth=2, num_heads=2)
TINY_EXTREMA = dict(arch=TINY_ARCH, img_size=32, patch_size=8, proj_hidden_dim=64, proj_dim=32,
                    pred_hidden_dim=64, mask_ratio=0.75, num_masks=4, drop_path_rate=0.)


@pytest.fixture
def tiny_extrema_kwargs():
    return dict(TINY_EXTREMA)


@pytest.fixture
def tiny_extrema():
    torch.manual_seed(0)
    return extrema.ExtreMA(**TINY_EXTREMA)


@pytest.fixture(scope='session')
def fashion_mnist_folder(tmp_path_factory):
    """ImageNet-layout Fashion-MNIST: 20 train and 10 val images per class, 32 px."""
    from extrema.data.fashion_mnist import export_image_folder
    root = tmp_path_factory.mktemp('fashion_mnist')
    export_image_folder(str(root), size=32, train_per_class=20, val_per_class=10)
    return str(root)
