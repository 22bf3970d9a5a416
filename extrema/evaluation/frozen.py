"""Frozen ExtreMA encoders and their cached features, for the frozen-feature protocols.

Features:
    'instance'     class-attention output after the final LN (the pretraining representation);
    'cls'          class-attention output before the final LN (the official linear probe);
    'mean_tokens'  mean of the last block's patch tokens.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Optional, Tuple

import torch
from mmengine.logging import print_log
from torch.utils.data import DataLoader, Dataset

from ..checkpoint import EncoderWeights, atomic_save, load_file
from ..models.data_preprocessor import NormalizeDataPreprocessor
from .features import extract_features

FEATURES = ('instance', 'cls', 'mean_tokens')


def file_sha256(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


class FrozenEncoder:
    """One encoder of a checkpoint (any format, ``extrema.checkpoint``) in eval mode, or the
    same architecture freshly initialised.

    ``identity`` names the weights for the feature cache: the checkpoint's sha256,
    or the architecture and seed of a random init. ``normalisation`` is the (mean, std)
    of the pretraining, which the checkpoint records.
    """

    def __init__(self, checkpoint_path: str, branch: str = 'teacher', random_init: bool = False,
                 num_heads: Optional[int] = None, seed: int = 0, device: str = 'cpu'):
        weights = EncoderWeights.read(checkpoint_path, branch, num_heads)
        self.config = weights.config
        torch.manual_seed(seed)
        self.model = weights.build()
        if random_init:
            self.identity = dict(random_init=True, seed=seed, config=self.config)
        else:
            weights.load_into(self.model, weights.has_class_attention, strict=True,
                              name=f'{branch} encoder of {osp.basename(checkpoint_path)}')
            self.identity = dict(checkpoint_sha256=file_sha256(checkpoint_path), branch=branch,
                                 config=self.config)
        self.normalisation = weights.mean, weights.std
        self.model.requires_grad_(False).eval().to(device)
        self.device = device

    @property
    def img_size(self) -> int:
        return self.model.img_size[0]

    @property
    def embed_dim(self) -> int:
        return self.model.embed_dim

    def check_feature(self, feature: str) -> None:
        if feature not in FEATURES:
            raise ValueError(f'feature must be one of {FEATURES}, got {feature!r}')
        if feature != 'mean_tokens' and not len(getattr(self.model, 'blocks_token', ())):
            raise ValueError(f"This encoder has no class-attention blocks, so feature {feature!r} does not "
                             "exist; use feature='mean_tokens'.")

    @torch.no_grad()
    def embed(self, images: torch.Tensor, feature: str) -> torch.Tensor:
        """Normalised images (B, 3, H, W) -> features (B, C)."""
        if feature == 'mean_tokens':
            return self.model.forward_tokens(images)[-1].mean(dim=1)
        return self.model.forward_features(images)[feature]


def image_label_batches(dataset: Dataset, batch_size: int, workers: int, shuffle: bool = False,
                        drop_last: bool = False):
    """Yields (uint8 images, labels) from a ``LabelledImageFolder``."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                        drop_last=drop_last, persistent_workers=False)
    for batch in loader:
        yield batch['inputs'], batch['data_samples']


def cached_features(encoder: FrozenEncoder, dataset: Dataset, feature: str,
                    normalise: NormalizeDataPreprocessor, cache_dir: Optional[str] = None, batch_size: int = 256,
                    workers: int = 4) -> Tuple[torch.Tensor, torch.Tensor]:
    """(features (N, C), labels (N,)) of ``dataset``, normalised by ``normalise.normalize``, read
    from the cache when the weights, the feature, the images and the preprocessing are all the
    same as when it was written."""
    encoder.check_feature(feature)
    if feature == 'instance':  # the final LN of the cached class-attention output: one forward for both
        cls, labels = cached_features(encoder, dataset, 'cls', normalise, cache_dir, batch_size, workers)
        with torch.no_grad():
            return encoder.model.norm(cls.to(encoder.device)).cpu(), labels
    key_fields = dict(weights=encoder.identity, feature=feature, transform=dataset.transform_cfg,
                      mean=normalise.mean.flatten().tolist(), std=normalise.std.flatten().tolist(),
                      samples=hashlib.sha256(json.dumps(dataset.samples).encode()).hexdigest())
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True, default=str).encode()).hexdigest()
    path = osp.join(cache_dir, f'{key[:24]}.pt') if cache_dir else None
    if path and osp.isfile(path):
        stored = load_file(path)
        if stored.get('key') == key:
            print_log(f'Features of {len(dataset)} images from cache {path}', logger='current')
            return stored['features'], stored['labels']
    device = encoder.device
    normalise = normalise.to(encoder.device)
    features, labels = extract_features(lambda x: encoder.embed(normalise.normalize(x), feature),
                                        image_label_batches(dataset, batch_size, workers), device=device,
                                        total=len(dataset))
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        atomic_save(dict(features=features, labels=labels, key=key), path)
    return features, labels
