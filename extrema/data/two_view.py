"""Pretraining data: one shared crop, two independently coloured views."""
import os
from typing import Optional, Sequence, Tuple

from torch.utils.data import Dataset
from torchvision.transforms import v2 as T

from ..registry import DATASETS
from .folder import SkipUnreadable, scan_image_folder

COLOR_MODES = ('color', 'spatial', 'color_teacher_extra')


def colour_pipeline(extra: bool = False) -> T.Compose:
    """ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8, grayscale p=0.2 -> uint8 tensor.

    ``extra`` adds BYOL's blur (p=0.5) and solarisation (p=0.2) on top.
    """
    steps = [T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)]
    if extra:
        steps += [T.RandomApply([T.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
                  T.RandomSolarize(128, p=0.2)]
    return T.Compose(steps + [T.PILToTensor()])


class TwoViewTransform:
    """RandomResizedCrop + flip shared by both views, then per-view colour.

    color_mode:
        'color'  (official ``--aug-spatialconsistent-color``): two independent colour pipelines;
        'spatial' (official ``--aug-spatial``): no colour; both views are the same pixels;
        'color_teacher_extra': as 'color', plus blur and solarisation on the teacher view.
    Views are uint8 (3, S, S); normalisation happens on the device.
    """

    def __init__(self, img_size: int = 224, crop_scale: Tuple[float, float] = (0.2, 1.0),
                 color_mode: str = 'color'):
        if color_mode not in COLOR_MODES:
            raise ValueError(f'color_mode must be one of {COLOR_MODES}, got {color_mode!r}')
        self.spatial = T.Compose([T.RandomResizedCrop(img_size, scale=tuple(crop_scale), antialias=True),
                                  T.RandomHorizontalFlip()])
        self.color_mode = color_mode
        self.student_colour = colour_pipeline()
        self.teacher_colour = colour_pipeline(extra=color_mode == 'color_teacher_extra')
        self.to_tensor = T.PILToTensor()

    def __call__(self, image):
        crop = self.spatial(image)
        if self.color_mode == 'spatial':
            view = self.to_tensor(crop)
            return [view, view]
        return [self.student_colour(crop), self.teacher_colour(crop)]


@DATASETS.register_module()
class TwoViewImageFolder(SkipUnreadable, Dataset):
    """Unlabelled pretraining images from an ImageNet-layout folder.

    Each item is ``dict(inputs=[student_view, teacher_view])``.
    """

    def __init__(self, data_root: str, data_prefix: str = 'train', img_size: int = 224,
                 crop_scale: Sequence[float] = (0.2, 1.0), color_mode: str = 'color',
                 max_bad_fraction: float = 0.01, max_samples: Optional[int] = None):
        self.root = os.path.join(data_root, data_prefix)
        self.samples, self.classes = scan_image_folder(self.root)
        if max_samples is not None:
            self.samples = self.samples[:max_samples]
        self.max_bad_fraction = max_bad_fraction
        self.transform = TwoViewTransform(img_size, tuple(crop_scale), color_mode)

    @property
    def metainfo(self) -> dict:
        return dict(classes=tuple(self.classes), images=len(self.samples))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        image, _ = self.load_rgb(index)
        return dict(inputs=self.transform(image))
