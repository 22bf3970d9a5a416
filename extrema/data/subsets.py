"""Labelled image-folder data for the low-label protocols.

* SimCLR split files (``extrema/data/splits/{1,10}percent.txt``, package data: one
  ``<wnid>_<id>.JPEG`` per line) select training images of an ImageNet-layout folder ``train/<wnid>/<file>``.
* ``percent`` draws a class-balanced subset of any image folder with a seed.
* Validation images come from class folders or from an annotation file.

Labels are indices into the sorted class folders of the training folder, so
train and validation agree however either is given.
"""
import hashlib
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log
from PIL import Image
from timm.data import create_transform
from timm.data.auto_augment import RandAugment, posterize
from torch.utils.data import Dataset

from ..registry import DATASETS
from .folder import SeededItems, SkipUnreadable, scan_image_folder

SPLITS_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'splits')  # package data, in wheels too
NAMED_SPLITS = ('1percent', '10percent')
Samples = List[Tuple[str, int]]


def resolve_split_file(split: str) -> str:
    """'1percent' | '10percent' (shipped SimCLR files) or a path to a split file."""
    path = osp.join(SPLITS_DIR, f'{split}.txt') if split in NAMED_SPLITS else split
    if not osp.isfile(path):
        raise FileNotFoundError(f'Split file {path!r} does not exist. Use one of {NAMED_SPLITS} '
                                f'(shipped in {SPLITS_DIR}) or the path of a file listing one '
                                'training image name per line, e.g. n01440764_10026.JPEG.')
    return path


def file_md5(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'md5').hexdigest()


def read_split_file(path: str) -> List[str]:
    """Image names of a SimCLR-style split file, each ``<class>_<id>.<ext>``."""
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    malformed = [n for n in names if '_' not in n or '/' in n]
    if malformed:
        raise ValueError(f'{path}: {len(malformed)} lines are not <class>_<id>.<ext> image names, '
                         f'e.g. {malformed[:3]}.')
    if len(set(names)) != len(names):
        raise ValueError(f'{path} lists {len(names) - len(set(names))} image names more than once.')
    if not names:
        raise ValueError(f'Split file {path} is empty.')
    return names


def class_folders(root: str) -> List[str]:
    if not osp.isdir(root):
        raise FileNotFoundError(f'{root!r} does not exist; expected an ImageNet-layout folder '
                                '<data_root>/train/<class>/<image>.')
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    if not classes:
        raise FileNotFoundError(f'{root!r} has no class sub-folders; expected <root>/<class>/<image>.')
    return classes


def select_listed_images(train_root: str, names: Sequence[str], classes: Sequence[str],
                         allow_missing: bool = False, split_file: str = 'the split') -> Samples:
    """[(path, label)] of the listed images, found at ``train_root/<class>/<name>``.

    Missing images raise (count and first names) unless ``allow_missing``.
    """
    index = {name: i for i, name in enumerate(classes)}
    on_disk = {}
    samples, missing = [], []
    for name in names:
        wnid = name.split('_', 1)[0]
        if wnid not in on_disk:
            folder = osp.join(train_root, wnid)
            on_disk[wnid] = set(os.listdir(folder)) if wnid in index and osp.isdir(folder) else set()
        if name in on_disk[wnid]:
            samples.append((osp.join(train_root, wnid, name), index[wnid]))
        else:
            missing.append(name)
    if missing:
        message = (f'{len(missing)} of {len(names)} images listed in {split_file} are missing under '
                   f'{train_root} (expected <train>/<class>/<name>), e.g. {missing[:5]}.')
        if not allow_missing or not samples:
            raise FileNotFoundError(message + ' Check data_root, or set allow_missing=True '
                                    '(CLI: --allow-missing) to use only the images present.')
        print_log(message + f' Using the {len(samples)} present (allow_missing=True).',
                  logger='current', level=30)
    return samples


def source_name(split: Optional[str], split_file: Optional[str], percent: Optional[float], seed: int) -> str:
    if split is not None:
        return f'split {split_file}'
    return f'{percent}% per class, seed {seed}' if percent is not None else 'all images'


def check_every_class_labelled(counts: np.ndarray, classes: Sequence[str], source: str,
                               allow_missing: bool = False) -> None:
    """A labelled subset without an image of some class cannot learn it, and its accuracy on
    that class is 0 by construction: an error, or a warning under ``allow_missing``."""
    empty = [name for name, count in zip(classes, counts) if count == 0]
    if not empty:
        return
    message = (f'{source} has no labelled image of {len(empty)} of the {len(classes)} classes, e.g. '
               f'{empty[:5]}.')
    if not allow_missing:
        raise ValueError(message + ' Check data_root and the split, or set allow_missing=True (CLI: '
                         '--allow-missing) to evaluate anyway (those classes cannot be predicted).')
    print_log(message + ' Continuing (allow_missing=True): those classes cannot be predicted.',
              logger='current', level=30)


def balanced_subset(samples: Samples, percent: float, seed: int = 0) -> Samples:
    """``percent`` % of every class (at least one image), drawn with ``seed``; original order kept."""
    if not 0 < percent <= 100:
        raise ValueError(f'percent must be in (0, 100], got {percent}')
    labels = np.array([label for _, label in samples])
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(len(members) * percent / 100))
        keep.append(rng.permutation(members)[:count])
    return [samples[i] for i in np.sort(np.concatenate(keep))]


HOLDOUT_PARTS = ('fit', 'heldout')


def split_holdout(samples: Samples, fraction: float, part: str, seed: int = 0) -> Samples:
    """One of two disjoint parts of a labelled set: ``heldout`` is ``fraction`` of every class
    (at least one image), drawn with ``seed``; ``fit`` is the rest. Hyper-parameters chosen
    on ``heldout`` after training on ``fit`` never see the test set."""
    if not 0 < fraction < 1:
        raise ValueError(f'holdout must be in (0, 1), got {fraction}')
    if part not in HOLDOUT_PARTS:
        raise ValueError(f'holdout_part must be one of {HOLDOUT_PARTS}, got {part!r}')
    labels = np.array([label for _, label in samples])
    rng = np.random.default_rng(seed)
    heldout = np.zeros(len(samples), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            raise ValueError(f'Class {label} has {len(members)} labelled image(s): too few to hold one out.')
        heldout[rng.permutation(members)[:max(1, round(len(members) * fraction))]] = True
    keep = heldout if part == 'heldout' else ~heldout
    return [sample for sample, kept in zip(samples, keep) if kept]


def read_annotation_file(image_root: str, ann_file: str, classes: Sequence[str]) -> Samples:
    """Lines ``<image path relative to image_root> <label index or class name>``."""
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'Annotation file {ann_file!r} does not exist.')
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    with open(ann_file) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f'{ann_file}:{number}: expected "<image> <label>", got {line.strip()!r}')
            path, label = parts
            label = int(label) if label.isdigit() else index.get(label, -1)
            if not 0 <= label < len(classes):
                raise ValueError(f'{ann_file}:{number}: label {parts[1]!r} is not one of the '
                                 f'{len(classes)} training classes.')
            samples.append((osp.join(image_root, path), label))
    return samples


def relabel_folder(samples: Samples, folder_classes: Sequence[str], classes: Sequence[str],
                   root: str) -> Samples:
    """Map the labels of a scanned folder onto the training class order."""
    unknown = sorted(set(folder_classes) - set(classes))
    if unknown:
        raise ValueError(f'{root} has class folders that are not training classes: {unknown[:5]}. '
                         'Train and validation must use the same class names.')
    index = {name: i for i, name in enumerate(classes)}
    return [(path, index[folder_classes[label]]) for path, label in samples]


def posterize_zero_bits_as_black(img: Image.Image, bits_to_keep: int, **kwargs) -> Image.Image:
    """timm's posterize, with 0 bits giving a black image as Pillow < 13 did.

    RandAugment's 'inc1' policy asks for 0 bits at magnitude 10 (reached by m9 plus
    magnitude noise), which Pillow >= 13 rejects with a ValueError mid-training.
    """
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return posterize(img, bits_to_keep, **kwargs)


def build_transform(config: dict):
    """``timm.data.create_transform(**config)`` returning uint8 tensors (normalised on the device)."""
    transform = create_transform(**config, use_prefetcher=True)
    for step in getattr(transform, 'transforms', ()):
        if isinstance(step, RandAugment):
            for op in step.ops:
                if op.aug_fn is posterize:
                    op.aug_fn = posterize_zero_bits_as_black
    return transform


@DATASETS.register_module()
class LabelledImageFolder(SeededItems, SkipUnreadable, Dataset):
    """Images and labels from an ImageNet-layout folder, optionally a labelled subset.

    The augmentation of item ``i`` in epoch ``e`` draws from a seed of (run seed, e, i)
    (``SeededItems``), so a fine-tuning run resumed with persistent workers is exact.

    Args:
        data_root: folder holding ``train/<class>/`` (which defines the classes) and the
            split folder ``data_prefix``.
        data_prefix: 'train', 'val', ... (class folders, or flat images with ``ann_file``).
        split: '1percent' | '10percent' | a split-file path: the listed training images.
        percent / seed: a class-balanced random subset instead of a split file.
        holdout / holdout_part: keep only the ``'fit'`` or the ``'heldout'`` part of the
            labelled set (``holdout`` of every class held out), to choose hyper-parameters.
        ann_file: ``<image> <label>`` lines, for a validation folder without class folders.
        allow_missing: use the images of the split that exist instead of failing.
        transform: ``timm.data.create_transform`` arguments; items are uint8 (3, H, W)
            and normalisation happens on the device.
        classes_prefix: the folder whose class sub-folders define the labels.
    """

    def __init__(self, data_root: str, data_prefix: str = 'train', split: Optional[str] = None,
                 percent: Optional[float] = None, seed: int = 0, ann_file: Optional[str] = None,
                 allow_missing: bool = False, transform: Optional[dict] = None,
                 classes_prefix: str = 'train', max_bad_fraction: float = 0.01,
                 holdout: Optional[float] = None, holdout_part: str = 'fit'):
        if split is not None and percent is not None:
            raise ValueError('Give either split (a split file) or percent (a balanced subset), not both.')
        self.root = osp.join(data_root, data_prefix)
        self.classes = class_folders(osp.join(data_root, classes_prefix))
        self.split_file = self.split_md5 = None
        if split is not None:
            self.split_file = resolve_split_file(split)
            self.split_md5 = file_md5(self.split_file)
            samples = select_listed_images(self.root, read_split_file(self.split_file), self.classes,
                                           allow_missing, self.split_file)
        elif ann_file is not None:
            samples = read_annotation_file(self.root, osp.join(data_root, ann_file), self.classes)
        else:
            samples, folder_classes = scan_image_folder(self.root)
            samples = relabel_folder(samples, folder_classes, self.classes, self.root)
        if percent is not None:
            samples = balanced_subset(samples, percent, seed)
        if holdout is not None:
            samples = split_holdout(samples, holdout, holdout_part, seed)
        self.samples = samples
        self.max_bad_fraction = max_bad_fraction
        self.bad_files  # noqa: B018  (shared flags made here, before any worker forks)
        self.transform_cfg = dict(transform or dict(input_size=224))
        self.transform = build_transform(self.transform_cfg)
        counts = np.bincount([label for _, label in samples], minlength=len(self.classes))
        source = source_name(split, self.split_file, percent, seed)
        if holdout is not None:
            source += f', {holdout_part} part of a {holdout:g} hold-out'
        if split is not None or percent is not None:
            check_every_class_labelled(counts, self.classes, source, allow_missing)
        if split is not None:
            source += f' (md5 {self.split_md5})'
        print_log(f'{self.root}: {len(samples)} images from {source}; {int((counts > 0).sum())} of '
                  f'{len(self.classes)} classes present, {counts[counts > 0].min()}-{counts.max()} per class.',
                  logger='current')

    @property
    def metainfo(self) -> dict:
        return dict(classes=tuple(self.classes), split_file=self.split_file, split_md5=self.split_md5)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        image, label = self.load_rgb(index)
        with self.item_rng(index):
            return dict(inputs=self.transform(image), data_samples=label)


__all__ = ['HOLDOUT_PARTS', 'LabelledImageFolder', 'NAMED_SPLITS', 'SPLITS_DIR', 'balanced_subset',
           'check_every_class_labelled', 'file_md5', 'split_holdout', 'read_annotation_file', 'read_split_file',
           'resolve_split_file', 'select_listed_images']
