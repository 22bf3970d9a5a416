"""The training and inference steps that the benchmark times.

Each builder returns a zero-argument callable that runs one step on a fixed
batch that already sits on the device.
"""
import contextlib
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper

from ..engine.optimizers import DecayGroupsOptimWrapperConstructor
from ..models.extrema import ExtreMA, byol_loss
from ..models.layers import split_heads
from ..models.masking import sample_masks
from ..models.short_attention import short_attention, short_attention_disabled

AMP_DTYPES = ('bfloat16', 'float16')


def build_optim_wrapper(model: nn.Module, device: torch.device, amp: Optional[str] = None,
                        lr: float = 1.5e-4) -> OptimWrapper:
    """The pretraining optimiser as ``tools/train.py`` builds it: fused AdamW (0.9, 0.95),
    wd 0.1 with [no_decay, decay] groups; mixed precision through mmengine's AmpOptimWrapper
    on GPU, bf16 through ``AutocastOptimWrapper`` on CPU."""
    optimizer = dict(type='AdamW', lr=lr, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    if amp is None:
        cfg = dict(type='OptimWrapper', optimizer=optimizer)
    elif amp not in AMP_DTYPES:
        raise ValueError(f'amp must be one of {AMP_DTYPES} or None, got {amp!r}')
    elif device.type == 'cpu':
        cfg = dict(type='extrema.AutocastOptimWrapper', dtype=amp, optimizer=optimizer)
    else:
        cfg = dict(type='AmpOptimWrapper', dtype=amp, optimizer=optimizer, loss_scale='dynamic')
    return DecayGroupsOptimWrapperConstructor(cfg)(model)


def random_uint8_images(batch: int, img_size: int, device: torch.device,
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, img_size, img_size), dtype=torch.uint8,
                         generator=generator).to(device)


def teacher_per_mask_loss(model: ExtreMA, inputs) -> Dict[str, torch.Tensor]:
    """The naive baseline: the same student, but one teacher forward per mask."""
    view1, view2 = inputs
    ids_keep = model.sample_masks(view1)
    prediction = model.forward_features(view1, 'student', ids_keep)['prediction']
    losses = []
    for chunk in prediction.chunk(ids_keep.shape[0]):
        with torch.no_grad():
            target = model.teacher.forward_features(view2)['projection']
        losses.append(byol_loss(chunk, target))
    return dict(loss=torch.stack(losses).mean())


def extrema_step(model: ExtreMA, optim_wrapper: OptimWrapper, batch: dict,
                 loss_fn: Optional[Callable] = None, momentum: float = 0.996) -> Callable[[], None]:
    """One pretraining iteration as the runner does it: the EMA update
    (``MomentumUpdateHook``), then ``model.train_step`` with ``loss_fn``
    (default ``model.loss``) in place of the loss forward."""
    loss_fn = loss_fn or model.loss

    def step():
        model.momentum_update(momentum)
        with optim_wrapper.optim_context(model):
            data = model.data_preprocessor(batch, True)
            losses = loss_fn(data['inputs'])
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)

    return step


SDPA_BACKENDS = {'flash': 'FLASH_ATTENTION', 'efficient': 'EFFICIENT_ATTENTION', 'cudnn': 'CUDNN_ATTENTION',
                 'math': 'MATH'}


def with_sdpa_backend(step: Callable[[], None], backend: Optional[str] = None) -> Callable[[], None]:
    """``step`` with every attention through ``F.scaled_dot_product_attention`` (no Triton
    short-sequence kernel), restricted to ``backend`` unless None (torch picks; the
    backward uses the kernel that the forward chose)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    choice = getattr(SDPBackend, SDPA_BACKENDS[backend]) if backend else None

    def restricted():
        with short_attention_disabled(), (sdpa_kernel(choice) if choice else contextlib.nullcontext()):
            step()

    return restricted


def attention_step(batch: int, length: int, dim: int, num_heads: int, device: torch.device,
                   dtype: torch.dtype, backward: bool, calls: int = 1, short: bool = False) -> Callable[[], None]:
    """``calls`` attention calls of a block (each with its backward when ``backward``) on one
    (B, L, 3 * C) qkv tensor as ``Attention`` gets it: ``F.scaled_dot_product_attention``
    on its (B, heads, L, head_dim) views, or ``short_attention`` on it when ``short``.
    Several calls per step keep the launch and sync of one timed sample out of the figure."""
    qkv = torch.randn(batch, length, 3 * dim, device=device, dtype=dtype, requires_grad=backward)
    head_dim = dim // num_heads
    grad_shape = (batch, length, dim) if short else (batch, num_heads, length, head_dim)
    grad = torch.randn(grad_shape, device=device, dtype=dtype)

    def step():
        for _ in range(calls):
            if short:
                out = short_attention(qkv, num_heads, head_dim ** -0.5)
            else:
                q, k, v = split_heads(qkv, num_heads)
                out = F.scaled_dot_product_attention(q, k, v)
            if backward:
                qkv.grad = None
                out.backward(grad)

    return step


def masks_of(model: ExtreMA, num_masks: int) -> Callable:
    """``model.loss`` with ``num_masks`` masks of the model's ratio."""
    def loss_fn(inputs):
        images = inputs[0]
        grid = model.student.check_img_size(images.shape[-2:])
        ids_keep = sample_masks(images.shape[0], grid[0] * grid[1], model.mask_ratio, num_masks,
                                model.disjoint_masks, device=images.device)
        return model.loss(inputs, ids_keep=ids_keep)
    return loss_fn


class SupervisedViT(BaseModel):
    """A timm ``VisionTransformer`` trained with cross-entropy on all tokens."""

    def __init__(self, arch: dict, img_size: int, patch_size: int, num_classes: int = 1000,
                 drop_path_rate: float = 0.1):
        from timm.models.vision_transformer import VisionTransformer
        from ..models.data_preprocessor import NormalizeDataPreprocessor
        super().__init__(data_preprocessor=NormalizeDataPreprocessor())
        self.vit = VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=arch['embed_dim'],
                                     depth=arch['depth'], num_heads=arch['num_heads'],
                                     num_classes=num_classes, drop_path_rate=drop_path_rate)

    def forward(self, inputs, data_samples=None, mode: str = 'loss'):
        logits = self.vit(inputs)
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, data_samples))
        return logits


def supervised_step(model: SupervisedViT, optim_wrapper: OptimWrapper, batch: dict) -> Callable[[], None]:
    return lambda: model.train_step(batch, optim_wrapper)


def inference_step(forward: Callable, images: torch.Tensor, amp: Optional[str]) -> Callable[[], None]:
    """``forward(images)`` under ``torch.inference_mode`` (and autocast on CUDA)."""
    def step():
        with torch.inference_mode(), autocast(images.device, amp):
            forward(images)
    return step


def autocast(device: torch.device, amp: Optional[str]):
    return torch.autocast(device.type, dtype=getattr(torch, amp or 'float32'), enabled=amp is not None)
