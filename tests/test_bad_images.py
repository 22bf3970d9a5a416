"""Unreadable images: counted once per file, across DataLoader workers; decompression
bombs skipped like any other bad file; 16-bit greyscale scaled, not clipped."""
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from extrema.data import RandomCropImageFolder
from extrema.data.folder import read_rgb


def image_folder(tmp_path, source, bad_names=(), copies=0):
    """The Fashion-MNIST train folder (200 images), ``copies`` more good images, and
    corrupt files at ``bad_names`` (class/file)."""
    root = tmp_path / 'images'
    shutil.copytree(os.path.join(source, 'train'), root / 'train')
    originals = sorted((root / 'train' / 'bag').iterdir())
    for index in range(copies):
        shutil.copy(originals[index % len(originals)], root / 'train' / 'bag' / f'copy{index:03d}.png')
    for name in bad_names:
        (root / 'train' / name).write_bytes(b'not a png')
    return str(root)


def test_a_bad_file_is_counted_once(tmp_path, fashion_mnist_folder):
    """3 bad files of 303, side by side (a failed read falls through to the next bad one),
    every item read twice: 3 counted, within the 1% limit (3.03 files). Counting reads,
    the loader stopped such a folder as "4 of 303"."""
    bad_names = [f'bag/00000_corrupt{i}.png' for i in range(3)]
    dataset = RandomCropImageFolder(image_folder(tmp_path, fashion_mnist_folder, bad_names, copies=100), img_size=32)
    bad = [i for i, (path, _) in enumerate(dataset.samples) if 'corrupt' in path]
    assert len(dataset) == 303 and bad == [bad[0], bad[0] + 1, bad[0] + 2]
    for _ in range(2):
        for index in range(len(dataset)):
            crop = dataset[index]['inputs']
            assert crop.shape == (3, 32, 32) and crop.dtype == torch.uint8
    assert dataset.check_bad_fraction() == 3
    assert dataset.bad_files.nonzero().flatten().tolist() == bad


def test_bad_files_are_counted_across_workers(tmp_path, fashion_mnist_folder):
    """4 bad files of 204 (2%, limit 2.04 files) over 2 workers that meet 2 each: counted per
    worker, the run never stopped; the shared count stops it at the third (or the fourth, when
    the other worker flagged its file between the third's flag and the check: never more than
    the 4 files there are)."""
    bad_names = [f'{name}/00000_corrupt.png' for name in ('bag', 'coat', 'dress', 'sandal')]
    dataset = RandomCropImageFolder(image_folder(tmp_path, fashion_mnist_folder, bad_names), img_size=32)
    bad = [i for i, (path, _) in enumerate(dataset.samples) if 'corrupt' in path]
    good = [i for i in range(len(dataset)) if i not in bad]
    # batch_size 1: worker 0 makes items 0, 2, 4, ..., worker 1 items 1, 3, 5, ...
    order = bad[:2] + good[:10] + bad[2:] + good[10:]
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2, sampler=order)
    with pytest.raises(RuntimeError, match=r'[34] of 204 image files are unreadable'):
        for _ in loader:
            pass


def test_limit_stops_a_broken_folder(tmp_path, fashion_mnist_folder):
    root = image_folder(tmp_path, fashion_mnist_folder, ['bag/00000_corrupt.png'])
    dataset = RandomCropImageFolder(root, img_size=32, max_bad_fraction=0.0)
    index = next(i for i, (path, _) in enumerate(dataset.samples) if 'corrupt' in path)
    with pytest.raises(RuntimeError, match='1 of 201 image files are unreadable'):
        dataset[index]


def test_decompression_bomb_is_skipped(tmp_path, fashion_mnist_folder, monkeypatch):
    """PIL refuses images of more than 2 * MAX_IMAGE_PIXELS with DecompressionBombError
    (not an OSError); with a tiny limit every 32-px image of the folder is such a bomb
    except the one 8-px image, which the loader falls through to."""
    root = tmp_path / 'bombs'
    (root / 'train' / 'a').mkdir(parents=True)
    Image.new('RGB', (32, 32), (10, 20, 30)).save(root / 'train' / 'a' / '0_bomb.png')
    Image.new('RGB', (8, 8), (200, 100, 50)).save(root / 'train' / 'a' / '1_small.png')
    dataset = RandomCropImageFolder(str(root), img_size=8, max_bad_fraction=0.5)
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)  # 32 * 32 > 2 * 100 >= 8 * 8
    with pytest.raises(Image.DecompressionBombError):
        read_rgb(str(root / 'train' / 'a' / '0_bomb.png'))
    crop = dataset[0]['inputs']
    assert dataset.bad_files.tolist() == [True, False]
    assert crop[:, 0, 0].tolist() == [200, 100, 50]


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 8-bit 0, 1, 128, 255
    path = str(tmp_path / 'deep.png')
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode.startswith('I')
    rgb = np.asarray(read_rgb(path))
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (rgb[..., 0] == rgb[..., 2]).all()
