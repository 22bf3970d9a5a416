"""Any checkpoint -> one encoder ready for analysis.

Pretraining checkpoints (ours or official) give the chosen branch with its
class-attention (instance) blocks; backbone files, mmseg segmentation checkpoints
and mmpretrain ViTs may hold only the self-attention trunk.
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from ..checkpoint import EncoderWeights
from ..models.data_preprocessor import NormalizeDataPreprocessor
from ..models.vit import ExtreMAEncoder, ViTTrunk


@dataclass
class LoadedEncoder:
    """An encoder in eval mode and what the analyses need to feed it."""
    encoder: Union[ExtreMAEncoder, ViTTrunk]
    mean: Tuple[float, float, float]  # pixel normalisation, 0-255 units
    std: Tuple[float, float, float]
    checkpoint_format: str  # what extrema.checkpoint.detect_format returns
    branch: str

    def __post_init__(self):
        self.preprocessor = NormalizeDataPreprocessor(self.mean, self.std).to(self.device)

    @property
    def has_instance_branch(self) -> bool:
        return isinstance(self.encoder, ExtreMAEncoder)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or 0-255 float images (B, 3, H, W) -> model input, on the encoder's device."""
        return self.preprocessor.normalize(images.to(self.device))

    def denormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """Model input -> 0-255 float images, on the CPU."""
        return (inputs.to(self.device) * self.preprocessor.std + self.preprocessor.mean).cpu()


def require_instance_branch(loaded: LoadedEncoder, analysis: str) -> ExtreMAEncoder:
    if not loaded.has_instance_branch:
        raise ValueError(
            f'{analysis} needs the instance branch (class-attention blocks blocks_token.*), which this '
            f'{loaded.checkpoint_format} checkpoint does not have; segmentation backbones and trunk-only '
            'conversions drop it. Use an ExtreMA pretraining checkpoint (ours or official), or a backbone '
            'converted with its class-attention blocks.')
    return loaded.encoder


def load_encoder(path: str, branch: str = 'teacher', num_heads: Optional[int] = None,
                 device: str = 'cpu') -> LoadedEncoder:
    """The ``branch`` encoder of a checkpoint of any format (``extrema.checkpoint``), in eval mode.

    An ``ExtreMAEncoder`` (without projector) when the class-attention keys are
    present, else a ``ViTTrunk``; ``num_heads`` overrides the head count when the
    checkpoint does not record it.
    """
    weights = EncoderWeights.read(path, branch, num_heads)
    encoder = weights.build()
    weights.load_into(encoder, weights.has_class_attention, name=f'{branch} encoder')
    return LoadedEncoder(encoder.to(device).eval(), weights.mean, weights.std, weights.format, branch)


def check_input_size(encoder: ViTTrunk, img_size: int) -> None:
    """Fail before compute when the encoder cannot take ``img_size`` inputs."""
    grid = encoder.check_img_size((img_size, img_size))
    window = encoder.blocks[0].attn.window_size
    if window is not None and tuple(window) != grid:
        raise ValueError(f'This encoder has relative position biases for a {window[0]}x{window[1]} grid '
                         f'({window[0] * encoder.patch_size} px); --img-size {img_size} gives '
                         f'{grid[0]}x{grid[1]}. Use --img-size {window[0] * encoder.patch_size}.')
