"""ImageNet-layout folders: ``root/<class>/<image>``, and robust image reading."""
import os
from typing import List, Sequence, Tuple

from mmengine.logging import print_log
from PIL import Image

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def scan_image_folder(root: str) -> Tuple[List[Tuple[str, int]], List[str]]:
    """(samples [(path, class index)], classes) of an ImageNet-layout folder, sorted."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f'Image folder {root!r} does not exist. Point data_root/data_prefix at an ImageNet-layout '
            f'folder (<root>/<class>/<image>), e.g. --cfg-options train_dataloader.dataset.data_root=..., '
            f'or make the default data with: python tools/prepare_fashion_mnist.py')
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    if not classes:
        raise FileNotFoundError(f'{root!r} has no class sub-folders; expected <root>/<class>/<image>.')
    samples = []
    for index, name in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, name))):
            samples += [(os.path.join(dirpath, f), index) for f in sorted(files)
                        if f.lower().endswith(IMG_EXTENSIONS)]
    if not samples:
        raise FileNotFoundError(f'{root!r} has class folders but no images with extensions {IMG_EXTENSIONS}.')
    return samples, classes


def read_rgb(path: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert('RGB')


class SkipUnreadable:
    """Mixin: ``load_rgb(index)`` skips unreadable images, counting them.

    A bad file is replaced by the next readable one and logged. When more than
    ``max_bad_fraction`` of the dataset has failed (counted per worker), the run
    stops: the data are broken, not a few files.
    """

    samples: Sequence[Tuple[str, int]]
    max_bad_fraction: float = 0.01
    _tried = 0
    _bad = 0

    def load_rgb(self, index: int) -> Tuple[Image.Image, int]:
        for offset in range(len(self.samples)):
            path, label = self.samples[(index + offset) % len(self.samples)]
            self._tried += 1
            try:
                return read_rgb(path), label
            except (OSError, ValueError, SyntaxError) as error:
                self._bad += 1
                print_log(f'Skipped unreadable image {path} ({error}); {self._bad} skipped of '
                          f'{self._tried} read so far.', logger='current', level=30)
                if self._bad > self.max_bad_fraction * len(self.samples):
                    raise RuntimeError(
                        f'{self._bad} of {len(self.samples)} images are unreadable, more than '
                        f'max_bad_fraction={self.max_bad_fraction} of the dataset. Check the data, '
                        f'or raise max_bad_fraction in the dataset config.') from error
        raise RuntimeError('No readable image in the dataset.')
