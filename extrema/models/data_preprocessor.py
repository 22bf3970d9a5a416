"""Device-side normalisation of uint8 image batches."""
from typing import Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from ..registry import MODELS

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@MODELS.register_module()
class TwoViewDataPreprocessor(BaseDataPreprocessor):
    """Moves ``inputs`` (a tensor or a list of view tensors, uint8 NCHW RGB) to the
    device and normalises each with the ImageNet mean/std (0-255 units)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 non_blocking: bool = True):
        super().__init__(non_blocking)
        self.register_buffer('mean', torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) / self.std

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, (list, tuple)):
            inputs = [self.normalize(view) for view in inputs]
        else:
            inputs = self.normalize(inputs)
        return dict(inputs=inputs, data_samples=data.get('data_samples'))
