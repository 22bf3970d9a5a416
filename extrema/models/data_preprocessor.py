"""Device-side preprocessing of uint8 image batches: normalisation, ExtreMA's two colour views, and
the fine-tuning classifier's targets (Mixup/CutMix, label smoothing, random erasing)."""
from typing import Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.data.random_erasing import RandomErasing

from ..registry import MODELS
from .color_augment import BatchColorAugment

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
COLOR_MODES = ('color', 'spatial', 'color_teacher_extra')


@MODELS.register_module()
class NormalizeDataPreprocessor(BaseDataPreprocessor):
    """Moves ``inputs`` (uint8 RGB, a (B, 3, H, W) tensor or a list of (3, H, W))
    to the device and normalises them with mean/std in 0-255 units."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 non_blocking: bool = True):
        super().__init__(non_blocking)
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor, max_value: float = 255.) -> torch.Tensor:
        """(images in [0, max_value], rescaled to 0-255, - mean) / std, as one multiply-add."""
        return torch.addcmul(-self.mean / self.std, images.float(), 255 / max_value / self.std)

    def images_of(self, data: dict) -> torch.Tensor:
        images = data['inputs']
        return torch.stack(images) if isinstance(images, (list, tuple)) else images

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        return dict(inputs=self.normalize(self.images_of(data)), data_samples=data.get('data_samples'))


@MODELS.register_module()
class TwoViewDataPreprocessor(NormalizeDataPreprocessor):
    """ExtreMA's views of a batch of shared crops, made on the device.

    In training, ``inputs`` becomes [student view, teacher view], each normalised:
        'color'  (official ``--aug-spatialconsistent-color``): two independent draws of
                 ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8 and grayscale p=0.2 per image;
        'spatial' (official ``--aug-spatial``): no colour, both views are the crop;
        'color_teacher_extra': as 'color', plus BYOL's blur (p=0.5) and solarisation
                 (p=0.2) on the teacher view.
    Outside training the crops are only normalised. On CUDA both views are made by one
    torch.compile'd function (uint8 crops in, normalised views out, fused kernels) unless
    ``compile_color=False``.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 color_mode: str = 'color', compile_color: bool = True, non_blocking: bool = True):
        super().__init__(mean, std, non_blocking)
        if color_mode not in COLOR_MODES:
            raise ValueError(f'color_mode must be one of {COLOR_MODES}, got {color_mode!r}')
        self.color_mode = color_mode
        self.student_color = BatchColorAugment()
        extra = dict(blur_prob=0.5, solarize_prob=0.2) if color_mode == 'color_teacher_extra' else {}
        self.teacher_color = BatchColorAugment(**extra)
        self.compile_color = compile_color
        self._compiled_views = None

    def color_views(self, crops: torch.Tensor, student_params: dict, teacher_params: dict) -> list:
        """uint8 crops -> [student view, teacher view], each coloured with its draws and normalised."""
        pixels = crops / 255  # uint8 -> float32 in [0, 1], one pass
        return [self.normalize(color.apply(pixels, params), max_value=1.)
                for color, params in ((self.student_color, student_params),
                                      (self.teacher_color, teacher_params))]

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        crops = self.images_of(data)
        if not training:
            return dict(inputs=self.normalize(crops), data_samples=data.get('data_samples'))
        if self.color_mode == 'spatial':
            view = self.normalize(crops)
            return dict(inputs=[view, view], data_samples=data.get('data_samples'))
        params = [color.draw(len(crops), crops.device) for color in (self.student_color, self.teacher_color)]
        make_views = self.color_views
        if crops.device.type == 'cuda' and self.compile_color:
            if self._compiled_views is None:
                self._compiled_views = torch.compile(self.color_views, dynamic=False)
            make_views = self._compiled_views
        with torch.autocast(crops.device.type, enabled=False):  # the blur's conv2d stays fp32 under AMP
            views = make_views(crops, *params)
        return dict(inputs=views, data_samples=data.get('data_samples'))


@MODELS.register_module()
class ClassifierDataPreprocessor(NormalizeDataPreprocessor):
    """uint8 images -> normalised floats on the device; labels -> training targets.

    In training, random erasing (timm ``RandomErasing`` kwargs) and Mixup/CutMix
    (timm ``Mixup`` kwargs) run on the device, as timm's prefetcher does, and the
    targets become soft (B, num_classes) with ``label_smoothing``. In evaluation the
    labels stay integer class indices.
    """

    def __init__(self, num_classes: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, label_smoothing: float = 0.1,
                 mixup: Optional[dict] = None, random_erasing: Optional[dict] = None,
                 non_blocking: bool = True):
        super().__init__(mean, std, non_blocking)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.mixup = (Mixup(**mixup, label_smoothing=label_smoothing, num_classes=num_classes)
                      if mixup else None)
        self.random_erasing = dict(random_erasing) if random_erasing else None

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        images = self.normalize(self.images_of(data))
        labels = data['data_samples']
        if not training:
            return dict(inputs=images, data_samples=labels)
        if self.random_erasing:
            images = RandomErasing(**self.random_erasing, device=images.device)(images)
        if self.mixup is None:
            return dict(inputs=images, data_samples=mixup_target(labels, self.num_classes,
                                                                 smoothing=self.label_smoothing))
        if images.shape[0] % 2:
            raise ValueError(f'Mixup/CutMix needs an even batch, got {images.shape[0]} images. Use an even '
                             'train_dataloader.batch_size with drop_last=True, or set '
                             'model.data_preprocessor.mixup=None.')
        images, targets = self.mixup(images, labels)
        return dict(inputs=images, data_samples=targets)
