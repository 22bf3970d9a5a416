"""ImageNet-layout folders: ``root/<class>/<image>``, robust image reading, and per-item seeds."""
import os
import random
from contextlib import contextmanager
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import print_log
from PIL import Image

from .sample_list import SampleList

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
# What PIL raises on a truncated, corrupt or hostile file. DecompressionBombError (an image
# of more than twice PIL's MAX_IMAGE_PIXELS) is not an OSError: without it, one such file
# in a folder kills the run.
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
SIXTEEN_BIT_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')


def scan_image_folder(root: str) -> Tuple[SampleList, List[str]]:
    """(samples [(path, class index)], classes) of an ImageNet-layout folder, sorted. The samples
    are a ``SampleList``: numpy buffers that forked DataLoader workers share instead of copying."""
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
    return SampleList(samples), classes


def read_rgb(path: str) -> Image.Image:
    """The image as 8-bit RGB. 16-bit greyscale (PNG, TIFF) is scaled by 255/65535:
    PIL's ``convert`` clips it at 255, which turns most of such an image white."""
    with Image.open(path) as image:
        if image.mode in SIXTEEN_BIT_MODES:
            levels = np.asarray(image, dtype=np.float64) * (255 / 65535)
            image = Image.fromarray(np.clip(np.rint(levels), 0, 255).astype(np.uint8), 'L')
        return image.convert('RGB')


class SkipUnreadable:
    """Mixin: ``load_rgb(index)`` skips unreadable images, counting the bad files.

    A bad file is flagged, logged once and replaced by the next readable one; a flagged
    file is never read again. The flags live in shared memory, so every DataLoader worker
    of a process sees the same count; ``TrainDataHook`` merges the flags of all ranks at
    the end of every epoch. When more than ``max_bad_fraction`` of the dataset is
    unreadable, the run stops: the data are broken, not a few files.
    """

    samples: Sequence[Tuple[str, int]]
    max_bad_fraction: float = 0.01
    _bad_flags: Optional[torch.Tensor] = None

    @property
    def bad_files(self) -> torch.Tensor:
        """One bool per sample, True for a file that could not be read. Created in shared
        memory on first use: touch it in the main process before workers start
        (``TrainDataHook`` does) so that they share it."""
        if self._bad_flags is None or len(self._bad_flags) != len(self.samples):
            self._bad_flags = torch.zeros(len(self.samples), dtype=torch.bool).share_memory_()
        return self._bad_flags

    def check_bad_fraction(self, error: Optional[BaseException] = None) -> int:
        """The number of bad files; raises when it exceeds ``max_bad_fraction``."""
        bad = int(self.bad_files.sum())
        if bad > self.max_bad_fraction * len(self.samples):
            raise RuntimeError(
                f'{bad} of {len(self.samples)} image files are unreadable, more than '
                f'max_bad_fraction={self.max_bad_fraction} of the dataset. Check the data, or raise '
                'max_bad_fraction in the dataset config.') from error
        return bad

    def load_rgb(self, index: int) -> Tuple[Image.Image, int]:
        flags = self.bad_files
        for offset in range(len(self.samples)):
            position = (index + offset) % len(self.samples)
            if flags[position]:
                continue
            path, label = self.samples[position]
            try:
                return read_rgb(path), label
            except UNREADABLE as error:
                flags[position] = True
                print_log(f'Skipped unreadable image {path} ({type(error).__name__}: {error}); '
                          f'{int(flags.sum())} of {len(self.samples)} files unreadable so far.',
                          logger='current', level=30)
                self.check_bad_fraction(error)
        raise RuntimeError('No readable image in the dataset.')


class SeededItems:
    """Mixin: the random draws of item ``i`` in epoch ``e`` come from a seed of
    (run seed, e, i), once ``set_epoch`` has been called.

    An item then does not depend on which worker makes it or on what that worker made
    before, so a resumed run produces the same data as an uninterrupted one with
    persistent workers too (their streams would otherwise carry on from epoch 0 in the
    uninterrupted run and restart in the resumed one). The epoch lives in shared memory:
    ``set_epoch`` in the main process reaches workers that are already running.
    """

    _epoch_seed: Optional[torch.Tensor] = None

    def set_epoch(self, epoch: int, seed: int) -> None:
        value = torch.tensor([seed, epoch], dtype=torch.int64)
        if self._epoch_seed is None:
            self._epoch_seed = value.share_memory_()
        else:
            self._epoch_seed.copy_(value)

    @contextmanager
    def item_rng(self, index: int):
        """Within this context torch, numpy and ``random`` draw from the item's seed; the
        process's own streams are restored afterwards (they drive the masks when
        ``num_workers=0``). Without ``set_epoch`` the process streams are used as they are."""
        if self._epoch_seed is None:
            yield
            return
        seed, epoch = self._epoch_seed.tolist()
        item_seed = int(np.random.SeedSequence([seed % 2**32, epoch, index]).generate_state(1)[0])
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed)
            random.seed(item_seed)
            np.random.seed(item_seed)
            try:
                yield
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)
