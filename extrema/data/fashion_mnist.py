"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (Expat licence).

The embedded default data of the toolkit: exported to ImageNet-layout folders
for pretraining and classification, and composited into ADE20K-layout scenes for
segmentation.
"""
import gzip
import os
import shutil
from typing import Optional, Tuple

import numpy as np
from PIL import Image

FASHION_MNIST_DIR = os.environ.get('FASHION_MNIST_DIR', '/usr/share/datasets/fashion-mnist')
CLASSES = ('t-shirt', 'trouser', 'pullover', 'dress', 'coat',
           'sandal', 'shirt', 'sneaker', 'bag', 'ankle-boot')


def load_fashion_mnist(split: str = 'train', root: str = FASHION_MNIST_DIR) -> Tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels uint8 (N,)) for split 'train' (60k) or 'test' (10k)."""
    prefix = {'train': 'train', 'test': 't10k'}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    image_file = os.path.join(root, f'{prefix}-images-idx3-ubyte.gz')
    label_file = os.path.join(root, f'{prefix}-labels-idx1-ubyte.gz')
    if not os.path.exists(image_file):
        raise FileNotFoundError(
            f'Fashion-MNIST not found at {image_file}. Install it with '
            f'`apt-get install -y dataset-fashion-mnist`, or set FASHION_MNIST_DIR.')
    with gzip.open(image_file) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(label_file) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def balanced_indices(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """``per_class`` random indices of every class, sorted."""
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def clear_export(split_dir: str) -> None:
    """Remove an earlier export of ours (interrupted, or with other counts or size), so that
    no stale images stay; refuse to touch a non-empty folder that is not one."""
    if not os.path.isdir(split_dir) or not os.listdir(split_dir):
        return
    if not any(os.path.exists(os.path.join(split_dir, m)) for m in ('.complete', '.exporting')):
        raise FileExistsError(f'{split_dir} is not empty and is not a Fashion-MNIST export of this toolkit; '
                              'choose another output folder or remove it.')
    shutil.rmtree(split_dir)


def export_image_folder(out_dir: str, size: int = 32, train_per_class: Optional[int] = None,
                        val_per_class: Optional[int] = None, seed: int = 0) -> dict:
    """Write ``out_dir/{train,val}/<class>/<index>.png`` (RGB, ``size`` px).

    Returns the number of images per split. Existing complete exports are kept.
    """
    counts = {}
    for split, source, per_class in (('train', 'train', train_per_class), ('val', 'test', val_per_class)):
        images, labels = load_fashion_mnist(source)
        indices = np.arange(len(labels)) if per_class is None else balanced_indices(labels, per_class, seed)
        split_dir = os.path.join(out_dir, split)
        marker = os.path.join(split_dir, '.complete')
        if os.path.exists(marker) and open(marker).read() == f'{len(indices)} {size} {seed}':
            counts[split] = len(indices)
            continue
        clear_export(split_dir)
        for name in CLASSES:
            os.makedirs(os.path.join(split_dir, name), exist_ok=True)
        open(os.path.join(split_dir, '.exporting'), 'w').close()
        for index in indices:
            image = Image.fromarray(images[index]).convert('RGB')
            if size != 28:
                image = image.resize((size, size), Image.BICUBIC)
            image.save(os.path.join(split_dir, CLASSES[labels[index]], f'{index:05d}.png'))
        with open(marker, 'w') as f:
            f.write(f'{len(indices)} {size} {seed}')
        os.remove(os.path.join(split_dir, '.exporting'))
        counts[split] = len(indices)
    return counts
