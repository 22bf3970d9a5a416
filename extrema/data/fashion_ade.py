"""Fashion-ADE: a small real segmentation set in ADE20K layout, built from Fashion-MNIST.

Each scene is a dark smooth random colour field with 2-4 tinted Fashion-MNIST
items pasted on it (later items occlude earlier ones), so items look as in
Fashion-MNIST, light on dark, at 20-44 px. Label PNG values:

* 0: ignore (the anti-aliased rim of each item, where the class is ambiguous);
* 1: background;
* 2..11: the Fashion-MNIST class + 2.

With ``reduce_zero_label=True`` (as for ADE20K) the rim becomes 255 (ignored),
background class 0 and the items classes 1..10: 11 classes in all. Training
scenes use Fashion-MNIST train items and validation scenes its test items.
"""
import os
import os.path as osp
from typing import Dict, Optional, Tuple

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS as MMSEG_DATASETS
from PIL import Image
from scipy.ndimage import binary_fill_holes

from .fashion_mnist import CLASSES, load_fashion_mnist

SEG_CLASSES = ('background',) + CLASSES
PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
           [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]]
IGNORE_VALUE, BACKGROUND_VALUE, FIRST_ITEM_VALUE = 0, 1, 2
MIN_ITEM, MAX_ITEM = 20, 44  # item side in pixels (Fashion-MNIST items are 28)
SPLITS = (('training', 'train'), ('validation', 'test'))  # (ADE20K folder, Fashion-MNIST split)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A dark smooth random colour field with pixel noise, float (H, W, 3) in [0, 255]."""
    coarse = Image.fromarray(rng.uniform(0, 70, (4, 4, 3)).astype(np.uint8))
    field = np.asarray(coarse.resize((width, height), Image.BICUBIC), np.float32)
    return np.clip(field + rng.normal(0, 4, field.shape), 0, 255)


def _item_layers(item: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(brightness, alpha), both float (size, size) in [0, 1], of one 28x28 item."""
    silhouette = binary_fill_holes(item > 8).astype(np.uint8) * 255
    alpha = np.asarray(Image.fromarray(silhouette).resize((size, size), Image.BILINEAR), np.float32)
    brightness = np.asarray(Image.fromarray(item).resize((size, size), Image.BILINEAR), np.float32)
    return brightness / 255, alpha / 255


def compose_scene(rng: np.random.Generator, items: np.ndarray, classes: np.ndarray,
                  height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """One scene: (RGB uint8 (H, W, 3), label uint8 (H, W)) from ``items`` (K, 28, 28)."""
    image = _background(rng, height, width)
    label = np.full((height, width), BACKGROUND_VALUE, np.uint8)
    for item, cls in zip(items, classes):
        size = int(rng.integers(MIN_ITEM, min(height, width, MAX_ITEM) + 1))
        top = int(rng.integers(0, height - size + 1))
        left = int(rng.integers(0, width - size + 1))
        brightness, alpha = _item_layers(item, size)
        colour = brightness[..., None] * rng.uniform(0.6, 1.0, 3) * 255  # a tinted Fashion-MNIST item
        window = (slice(top, top + size), slice(left, left + size))
        image[window] = alpha[..., None] * colour + (1 - alpha[..., None]) * image[window]
        patch = label[window]
        patch[alpha > 0.25] = IGNORE_VALUE
        patch[alpha > 0.75] = FIRST_ITEM_VALUE + cls
    return np.round(image).astype(np.uint8), label


def generate_fashion_ade(out_dir: str, train_images: int = 1000, val_images: int = 100,
                         min_side: int = 64, max_side: int = 96, seed: int = 0) -> Dict[str, int]:
    """Write ``out_dir/images/{training,validation}/*.jpg`` and ``annotations/.../*.png``.

    Scene sides are drawn from [min_side, max_side]. A split already generated
    with the same arguments is kept. Returns the number of scenes per split.
    """
    if min_side < MAX_ITEM or max_side < min_side:
        raise ValueError(f'Need {MAX_ITEM} <= min_side <= max_side, got {min_side}, {max_side}.')
    rng = np.random.default_rng(seed)
    counts = {}
    for (folder, source), count in zip(SPLITS, (train_images, val_images)):
        image_dir = osp.join(out_dir, 'images', folder)
        label_dir = osp.join(out_dir, 'annotations', folder)
        marker = osp.join(image_dir, '.complete')
        signature = f'{count} {min_side} {max_side} {seed}'
        counts[folder] = count
        if osp.exists(marker) and open(marker).read() == signature:
            continue
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(label_dir, exist_ok=True)
        items, classes = load_fashion_mnist(source)
        for index in range(count):
            height, width = rng.integers(min_side, max_side + 1, 2)
            picks = rng.integers(0, len(items), int(rng.integers(2, 5)))
            image, label = compose_scene(rng, items[picks], classes[picks], int(height), int(width))
            name = f'fashion_ade_{folder}_{index:05d}'
            Image.fromarray(image).save(osp.join(image_dir, f'{name}.jpg'), quality=95)
            Image.fromarray(label).save(osp.join(label_dir, f'{name}.png'))
        with open(marker, 'w') as f:
            f.write(signature)
    return counts


@MMSEG_DATASETS.register_module()
class FashionADEDataset(BaseSegDataset):
    """An ADE20K-layout folder (``images/<split>/*.jpg``, ``annotations/<split>/*.png``, label 0 =
    ignore with ``reduce_zero_label``): the Fashion-ADE scenes (see the module docstring, 11
    classes) by default, or a folder of your own with ``metainfo=dict(classes=(...))``.

    Given classes are the classes of the label files, in order (label value i + 1 is class i under
    ``reduce_zero_label``); they are not remapped to the Fashion-ADE ones. Without a palette of
    the same length a fixed random one is drawn (mmseg's rule).
    """

    METAINFO = dict(classes=SEG_CLASSES, palette=PALETTE)

    def __init__(self, img_suffix: str = '.jpg', seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = True, metainfo: Optional[dict] = None, **kwargs):
        if metainfo and 'classes' in metainfo and tuple(metainfo['classes']) != SEG_CLASSES:
            # The Fashion-ADE palette does not colour other classes: mmseg draws one.
            metainfo = dict(metainfo, palette=metainfo.get('palette') or [])
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, metainfo=metainfo, **kwargs)

    @classmethod
    def get_label_map(cls, new_classes=None) -> None:
        # mmseg maps new classes by name onto METAINFO's (a subset, others ignored); here the
        # configured classes are those the label files hold, so the values stay as they are.
        return None

    def load_data_list(self) -> list:
        image_dir = self.data_prefix.get('img_path', '')
        layout = ('An ADE20K-layout folder holds images/{training,validation}/*' + self.img_suffix +
                  ' and annotations/{training,validation}/*' + self.seg_map_suffix + ' under data_root')
        if not osp.isdir(image_dir):
            raise FileNotFoundError(
                f'No image folder at {image_dir!r} (data_root={self.data_root!r}). {layout}; for the '
                f'Fashion-ADE scenes run `python tools/prepare_fashion_ade.py --out {self.data_root or "DIR"}`'
                ', or point data_root at the generated folder.')
        data_list = super().load_data_list()
        if not data_list:
            raise FileNotFoundError(f'No {self.img_suffix} images in {image_dir!r}. {layout} (set img_suffix '
                                    'for other extensions); Fashion-ADE scenes: tools/prepare_fashion_ade.py.')
        return data_list
