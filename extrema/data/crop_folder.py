"""Pretraining data: one random crop per image, as uint8; colour comes later, on the device."""
import os
from typing import Optional, Sequence, Tuple

from torch.utils.data import Dataset
from torchvision.transforms import v2 as T

from ..registry import DATASETS
from .folder import SeededItems, SkipUnreadable, scan_image_folder


def random_crop_transform(img_size: int = 224, crop_scale: Tuple[float, float] = (0.2, 1.0)) -> T.Compose:
    """PIL image -> RandomResizedCrop (bilinear, antialiased) + horizontal flip, uint8 (3, S, S).

    The crop runs on the uint8 tensor, where torchvision's resize is vectorised
    (about half the time of PIL's resize).
    """
    return T.Compose([T.PILToTensor(), T.RandomResizedCrop(img_size, scale=tuple(crop_scale), antialias=True),
                      T.RandomHorizontalFlip()])


@DATASETS.register_module()
class RandomCropImageFolder(SeededItems, SkipUnreadable, Dataset):
    """Unlabelled pretraining images from an ImageNet-layout folder.

    Each item is ``dict(inputs=crop)``, one RandomResizedCrop(scale ``crop_scale``)
    and flip of the image as uint8 (3, S, S). The crop is shared by both views:
    ``TwoViewDataPreprocessor`` colours it twice on the device, so the workers
    only decode, crop and resize. Under the Runner each item's crop is drawn from a seed
    of (run seed, epoch, index) (``SeededItems``, set by ``TrainDataHook``), which keeps
    kill-and-resume exact with persistent workers.
    """

    def __init__(self, data_root: str, data_prefix: str = 'train', img_size: int = 224,
                 crop_scale: Sequence[float] = (0.2, 1.0), max_bad_fraction: float = 0.01,
                 max_samples: Optional[int] = None):
        self.root = os.path.join(data_root, data_prefix)
        self.samples, self.classes = scan_image_folder(self.root)
        if max_samples is not None:
            self.samples = self.samples[:max_samples]
        self.max_bad_fraction = max_bad_fraction
        self.transform = random_crop_transform(img_size, tuple(crop_scale))
        self.bad_files  # noqa: B018  (shared flags made here, before any worker forks)

    @property
    def metainfo(self) -> dict:
        return dict(classes=tuple(self.classes), images=len(self.samples))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        image, _ = self.load_rgb(index)
        with self.item_rng(index):
            return dict(inputs=self.transform(image))
